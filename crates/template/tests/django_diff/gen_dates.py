import json, copy, datetime, os
os.makedirs("/tmp/diff", exist_ok=True)
import django
from django.conf import settings
settings.configure(DEBUG=False, USE_TZ=False, TIME_ZONE="UTC", LANGUAGE_CODE="en-us", USE_I18N=True, INSTALLED_APPS=[], TEMPLATES=[])
django.setup()
from django.template import Engine, Context
dts = ["2024-03-05T14:07:09", "2023-12-31T00:05:00", "2024-02-29T12:00:00", "2021-01-01T00:00:00", "2020-06-15T23:59:59.123456", "2024-12-30T08:00:00", "1999-07-04T12:30:00"]
ds = ["2024-09-01", "2023-01-01", "2024-02-29"]
fmts = list("aAbcdDeEfFgGhHiIjlLmMnNoOPrsStTuUwWyYzZ") + ["DATE_FORMAT", "DATETIME_FORMAT", "SHORT_DATE_FORMAT", "SHORT_DATETIME_FORMAT", "YEAR_MONTH_FORMAT", "MONTH_DAY_FORMAT", "TIME_FORMAT", "\\Y\\e\\s Y", "jS F Y H:i"]
cases = []; i = 0
def typed(v):
    if isinstance(v, dict) and len(v) == 1:
        k, s = next(iter(v.items()))
        if k == "$datetime": return datetime.datetime.fromisoformat(s)
        if k == "$date": return datetime.date.fromisoformat(s)
    return v
def add(tpl, ctx):
    global i
    i += 1
    c = {"name": "dt%d" % i, "template": tpl, "context": ctx, "autoescape": False}
    try:
        c["expected"] = Engine().from_string(tpl).render(Context({k: typed(v) for k, v in ctx.items()}, autoescape=False))
    except Exception as ex:
        c["expected"] = None; c["error"] = type(ex).__name__
    cases.append(c)
for d in dts:
    for f in fmts:
        add("{{ d|date:'%s' }}" % f, {"d": {"$datetime": d}})
        add("{{ d|time:'%s' }}" % f, {"d": {"$datetime": d}})
    add("{{ d }}|{{ d|date }}|{{ d|time }}", {"d": {"$datetime": d}})
    for d2 in dts:
        add("{{ d|timesince:e }}|{{ d|timeuntil:e }}", {"d": {"$datetime": d}, "e": {"$datetime": d2}})
for d in ds:
    for f in fmts:
        add("{{ d|date:'%s' }}" % f, {"d": {"$date": d}})
    add("{{ d }}|{{ d|date }}|{{ l }}", {"d": {"$date": d}, "l": [{"$date": d}]})
    add("{% if d < e %}lt{% endif %}{% if d == d %}eq{% endif %}", {"d": {"$date": d}, "e": {"$date": "2024-06-01"}})
with open("/tmp/diff/cases3.jsonl", "w") as fh:
    for c in cases: fh.write(json.dumps(c) + "\n")
print(len(cases))
