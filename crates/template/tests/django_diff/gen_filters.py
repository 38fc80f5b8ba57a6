import json, sys, itertools, copy, os
os.makedirs("/tmp/diff", exist_ok=True)
import django
from django.conf import settings
settings.configure(DEBUG=False, USE_TZ=False, TIME_ZONE="UTC", LANGUAGE_CODE="en-us", USE_I18N=True, INSTALLED_APPS=[], TEMPLATES=[])
django.setup()
from django.template import Engine, Context
vals = {"s": "Hello, World & 'q' \"d\" <b>", "e": "", "n": 42, "neg": -7, "f": 2.675, "g": 1234567.891, "z": None, "t": True, "F": False,
        "l": [3, "a", None, 2.5], "ls": ["b", "a", "c"], "d": {"k": "v", "n": 1}, "u": "Zoë café ß", "big": 1e300, "tiny": 1.5e-7,
        "ns": "12", "fs": " 3.5 ", "ws": "  a  b\tc\n d ", "html": "<p>x &amp; y</p>", "nl": "a\r\nb\n\nc"}
filters = ["upper","lower","title","capfirst","length","first","last","default:'D'","default_if_none:'N'","floatformat","floatformat:2","floatformat:-2","floatformat:'3g'","floatformat:0",
 "add:2","add:'x'","add:l","cut:'a'","slugify","wordcount","make_list","join:'-'","slice:'1:3'","slice:'::-1'","truncatechars:4","truncatewords:1","yesno","yesno:'a,b'","pluralize",
 "divisibleby:2","get_digit:1","stringformat:'s'","stringformat:'r'","stringformat:'5.1f'","stringformat:'x'","stringformat:'+d'","filesizeformat","center:12","ljust:8","rjust:8",
 "escape","force_escape","safe","striptags","linebreaksbr","linebreaks","escapejs","addslashes","urlencode","iriencode","wordwrap:3","json_script","length|add:1","dictsort:'k'",
 "phone2numeric","linenumbers","escapeseq|join:','","safeseq|join:','","unordered_list","pprint","date:'Y'","first|upper","last|lower","make_list|join:'+'","title|slice:':5'"]
cases = []
i = 0
for f in filters:
    for v in vals:
        for ae in (False, True):
            tpl = "{{ %s|%s }}" % (v, f)
            i += 1
            c = {"name": "d%d" % i, "template": tpl, "context": copy.deepcopy(vals), "autoescape": ae}
            try:
                out = Engine(autoescape=ae).from_string(tpl).render(Context(copy.deepcopy(vals), autoescape=ae))
                c["expected"] = out
            except Exception as ex:
                c["expected"] = None; c["error"] = type(ex).__name__
            cases.append(c)
extra = ["{{ d.items }}","{{ d.keys }}","{% for k, v in d.items %}{{k}}={{v}};{% endfor %}","{{ s.split }}","{{ l.0 }}{{ l.1 }}","{% if l %}y{% endif %}{% if 'a' in l %}A{% endif %}",
 "{% if n > 40 and not z %}ok{% endif %}","{% if n == 42.0 %}eq{% endif %}","{% if ls|length >= 3 %}3{% endif %}","{% for x in ls reversed %}{{ forloop.revcounter }}{{ x }}{% endfor %}",
 "{% for x in s %}{% ifchanged %}{{ x }}{% endifchanged %}{% endfor %}","{% with a=n|add:1 b='q' %}{{ a }}{{ b }}{% endwith %}","{% widthratio n 100 50 %}","{% firstof z e n %}",
 "{{ f }}|{{ g }}|{{ big }}|{{ tiny }}|{{ neg }}","{{ l }}|{{ d }}","{% filter upper|cut:'A' %}abc{{ s }}{% endfilter %}","{% spaceless %} <a> <b> x </b> </a> {% endspaceless %}",
 "{% cycle 'a' 'b' as c %}{% cycle c %}{{ c }}","{% for x in ls %}{% cycle 'r1' 'r2' %}{% endfor %}{% resetcycle %}","{% regroup l by 0 as g %}{{ g|length }}","{{ u|upper }}{{ u|lower }}{{ u|title }}",
 "{% if z is None %}N{% endif %}{% if t is True %}T{% endif %}{% if n is 42 %}I{% endif %}","{% if s < e %}lt{% else %}ge{% endif %}","{% if l == l %}same{% endif %}","{% if 1 in d %}x{% else %}y{% endif %}",
 "{{ n|add:'3' }}{{ ns|add:ns }}{{ fs|floatformat:1 }}{{ ns|floatformat:'2g' }}","{{ ws|wordwrap:2 }}","{{ nl|linebreaksbr }}","{% autoescape on %}{{ html }}{% endautoescape %}","{% templatetag openbrace %}",
 "{{ s|truncatechars:0 }}|{{ s|truncatechars:-1 }}|{{ s|truncatechars:100 }}", "{{ g|floatformat:'-2g' }}|{{ neg|floatformat:3 }}|{{ 0.0005|floatformat:3 }}|{{ 0.0004|floatformat:3 }}|{{ -0.0004|floatformat:3 }}",
 "{{ 1e16|floatformat }}|{{ 123456789.999|floatformat:2 }}|{{ 9.995|floatformat:2 }}|{{ 999.5|floatformat:0 }}"]
for tpl in extra:
    for ae in (False, True):
        i += 1
        c = {"name": "x%d" % i, "template": tpl, "context": copy.deepcopy(vals), "autoescape": ae}
        try:
            c["expected"] = Engine(autoescape=ae).from_string(tpl).render(Context(copy.deepcopy(vals), autoescape=ae))
        except Exception as ex:
            c["expected"] = None; c["error"] = type(ex).__name__
        cases.append(c)
with open("/tmp/diff/cases.jsonl", "w") as fh:
    for c in cases: fh.write(json.dumps(c) + "\n")
print(len(cases))
