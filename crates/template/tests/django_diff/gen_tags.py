import json, copy, itertools, os
os.makedirs("/tmp/diff", exist_ok=True)
import django
from django.conf import settings
settings.configure(DEBUG=False, USE_TZ=False, TIME_ZONE="UTC", LANGUAGE_CODE="en-us", USE_I18N=True, INSTALLED_APPS=[], TEMPLATES=[])
django.setup()
from django.template import Engine, Context
vals = {"a": 1, "b": 0, "c": "x", "e": "", "z": None, "t": True, "f": False, "l": [1, 2, 3], "el": [], "s": "abc",
        "d": {"k": "v", "x": [1, {"y": "z"}]}, "pairs": [["a", 1], ["b", 2]], "people": [{"n": "A", "g": 1}, {"n": "B", "g": 1}, {"n": "C", "g": 2}],
        "fl": 1.5, "neg": -2, "html": "<i>&</i>", "nested": [[1, [2, 3]], [4]], "words": "one two  three"}
exprs = ["a", "b", "not a", "a and b", "a or b", "not a or b", "a and not b", "a == 1", "a != 1", "a < b", "a >= 1", "c == 'x'", "c in s", "'b' in s",
  "1 in l", "4 not in l", "'k' in d", "z is None", "z is not None", "a is 1", "t is True", "e == ''", "l == l", "el", "d", "fl > 1", "fl == 1.5",
  "c > a", "z < 1", "l < l", "s < 'b'", "a == b == c", "a or b and c", "not not a", "a|add:1 == 2", "l|length > 2", "missing", "missing.x == None",
  "missing or a", "a and missing", "d.k == 'v'", "d.x.1.y == 'z'", "l.0 == 1", "s.0 == 'a'", "a in missing", "t == 1", "f == 0", "1 == 1.0", "'a' < 'b' < 'c'",
  "not", "a ==", "and a", "a b", "== a", "a not b", "(a)", "a = 1", "a in", "is", "not in l"]
tpls = ["{%% if %s %%}Y{%% else %%}N{%% endif %%}" % e for e in exprs]
tpls += [
 "{% for x in l %}{{ forloop.counter }}{{ forloop.first }}{{ forloop.last }}{% endfor %}",
 "{% for x in l reversed %}{{ x }}{{ forloop.revcounter0 }}{% empty %}E{% endfor %}",
 "{% for x in el %}{{ x }}{% empty %}E{% endfor %}", "{% for x in missing %}{{ x }}{% empty %}E{% endfor %}",
 "{% for k, v in pairs %}{{ k }}={{ v }};{% endfor %}", "{% for k,v in pairs %}{{ k }}{% endfor %}", "{% for k , v in pairs %}{{ k }}{% endfor %}",
 "{% for a, b in l %}{{ a }}{% endfor %}", "{% for x in s %}{{ x }}{% endfor %}", "{% for x in d %}{{ x }}{% endfor %}", "{% for x in a %}{{ x }}{% endfor %}",
 "{% for x in z %}{{ x }}{% endfor %}", "{% for x in nested %}{% for y in x %}{{ forloop.parentloop.counter }}.{{ forloop.counter }}{% endfor %}|{% endfor %}",
 "{% for x in l %}{{ forloop }}{% endfor %}", "{% for x in l %}{% cycle 'a' 'b' as cv %}{{ cv }}{% endfor %}{{ cv }}",
 "{% for x in l %}{% cycle 'a' 'b' 'c' as cv silent %}{% endfor %}{{ cv }}", "{% cycle 'a' 'b' as cv %}{% cycle cv %}{% cycle cv %}{% resetcycle cv %}{% cycle cv %}",
 "{% for x in l %}{% cycle a b %}{% endfor %}", "{% cycle 'a' %}", "{% cycle %}", "{% cycle nope %}", "{% resetcycle %}",
 "{% with x=a y='q' %}{{ x }}{{ y }}{% endwith %}{{ x }}", "{% with a as x %}{{ x }}{% endwith %}", "{% with a as x and b as y %}{{ x }}{{ y }}{% endwith %}",
 "{% with %}{% endwith %}", "{% with x=1 junk %}{% endwith %}", "{% with x=missing %}[{{ x }}]{% endwith %}",
 "{% firstof b e a %}", "{% firstof b e %}", "{% firstof html %}", "{% firstof b 'lit<' %}", "{% firstof a as fv %}[{{ fv }}]", "{% firstof %}",
 "{% for p in people %}{% ifchanged p.g %}<{{ p.g }}>{% endifchanged %}{{ p.n }}{% endfor %}",
 "{% for p in people %}{% ifchanged p.g p.n %}!{% else %}.{% endifchanged %}{% endfor %}",
 "{% regroup people by g as gr %}{% for x in gr %}{{ x.grouper }}:{{ x.list|length }};{% endfor %}", "{% regroup missing by g as gr %}[{{ gr }}]",
 "{% regroup people by n|lower as gr %}{{ gr.0.grouper }}", "{% regroup people by g %}",
 "{% widthratio a 3 100 %}", "{% widthratio fl 2 10 %}", "{% widthratio a 0 100 %}", "{% widthratio missing 3 100 %}", "{% widthratio a 3 'x' %}", "{% widthratio a 3 %}",
 "{% spaceless %}<a>  <b> </b>\n</a>{% endspaceless %}", "{% autoescape off %}{{ html }}{% endautoescape %}{{ html }}", "{% autoescape maybe %}{% endautoescape %}",
 "{% filter force_escape|upper %}{{ html }}{% endfilter %}", "{% filter escape %}x{% endfilter %}", "{% filter length %}abc{% endfilter %}",
 "{% verbatim %}{% if %}{{ x }}{% endverbatim %}", "{% comment %}{% if %}{% endcomment %}ok", "a{# {% if %} #}b", "{% templatetag openvariable %}", "{% templatetag nope %}",
 "{{ d.items }}", "{{ s.upper }}{{ s.title }}{{ s.capitalize }}{{ s.isdigit }}{{ s.isalpha }}", "{{ l.count }}", "{{ d.get }}", "{{ l.1 }}{{ l.9 }}{{ s.1 }}",
 "{{ d.x.1.y }}", "{{ fl }}{{ neg }}{{ z }}{{ t }}", "{{ 'a\\'b' }}", '{{ "a\\"b" }}', "{{ 1.5e3 }}", "{{ 007 }}", "{{ -0.0 }}", "{{ 1_000 }}", "{{ a.real }}",
 "{{ }}", "{% %}", "{{ a|}}", "{{ |a }}", "{{ a||upper }}", "{{ a|upper:1 }}", "{{ a|add }}", "{{ a:1 }}", "{{ 'unclosed }}", "{{ a.b. }}", "{{ a. }}",
 "{% if a %}", "{% if a %}{% else %}{% else %}{% endif %}", "{% for %}", "{% for x l %}{% endfor %}", "{% for x in l %}", "{% endif %}", "{% else %}",
 "{{ html }}", "{{ html|safe|escape }}", "{{ html|escape|safe }}", "{{ html|cut:'<' }}", "{{ html|force_escape|safe }}",
 "{% now %}", "{% load static %}", "{% block x %}{% endblock %}", "{% include 'x' %}",
 "{{ words|truncatewords:2 }}|{{ words|wordcount }}", "{% if a %}\n{{ a }}\n{% endif %}", "{{ a\n}}", "{% if a\n%}x{% endif %}",
]
cases=[]; i=0
for tpl in tpls:
    for ae, sii in ((False, ""), (True, ""), (False, "INV")):
        i+=1
        c={"name":"t%d"%i,"template":tpl,"context":copy.deepcopy(vals),"autoescape":ae,"string_if_invalid":sii}
        try:
            c["expected"]=Engine(autoescape=ae, string_if_invalid=sii).from_string(tpl).render(Context(copy.deepcopy(vals), autoescape=ae))
        except Exception as ex:
            c["expected"]=None; c["error"]=type(ex).__name__
        cases.append(c)
with open("/tmp/diff/cases2.jsonl","w") as fh:
    for c in cases: fh.write(json.dumps(c)+"\n")
print(len(cases))
