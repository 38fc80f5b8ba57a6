import json,sys
exp = {}
for l in open('/tmp/diff/cases.jsonl'):
    c=json.loads(l); exp[c['name']]=c
bad=0
for l in open('/tmp/diff/ours.jsonl'):
    r=json.loads(l); c=exp[r['name']]
    if c.get('expected') is not None:
        ok = r.get('output') == c['expected']
    else:
        ok = 'error' in r
    if not ok:
        bad+=1
        print(c['template'], 'ae=',c['autoescape'], '\n   django:', repr(c.get('expected')), c.get('error',''), '\n   ours:  ', repr(r.get('output')), r.get('error',''))
print('mismatches', bad, 'of', len(exp))
