#!/usr/bin/env python3
"""Print the klaviyo-api SDK's pydantic model trees: R = key required, o = optional (Optional[...] also
accepts null), with types (str strict=True means a JSON string and nothing else) and enum validators.

    .venv/bin/python tests/client/tools/sdk_models.py [--required] ModelName ...
    .venv/bin/python tests/client/tools/sdk_models.py --covered > tests/client/SDK_MODELS.txt
"""
import sys, typing, enum, inspect, datetime
from pydantic import BaseModel
import openapi_client.models as M

def tname(a):
    o = typing.get_origin(a)
    if o is typing.Union:
        args=[x for x in typing.get_args(a) if x is not type(None)]
        return ' | '.join(tname(x) for x in args) + (' (nullable)' if len(args)<len(typing.get_args(a)) else '')
    if o in (list, typing.List): return 'List[%s]' % tname(typing.get_args(a)[0])
    if o in (dict, typing.Dict): return 'Dict[%s]' % ', '.join(tname(x) for x in typing.get_args(a))
    if o is typing.Annotated:
        base=typing.get_args(a)[0]; meta=a.__metadata__
        return '%s%s' % (tname(base), [str(m) for m in meta])
    if isinstance(a, type) and issubclass(a, enum.Enum): return '%s%s' % (a.__name__, [e.value for e in a])
    if isinstance(a, type): return a.__name__
    return str(a).replace('typing.','')

def inner_models(a):
    out=[]
    for x in (typing.get_args(a) or ()):
        out+=inner_models(x)
    if isinstance(a,type) and issubclass(a,BaseModel): out.append(a)
    return out

def walk(cls, ind, seen, only_required):
    vals = cls.__pydantic_decorators__.field_validators
    vmap={}
    for name,d in vals.items():
        for f in d.info.fields: vmap.setdefault(f,[]).append(name)
    for name, f in cls.model_fields.items():
        req = f.is_required()
        if only_required and not req: continue
        key = f.alias or name
        extra = ''
        if name in vmap:
            src = inspect.getsource(getattr(cls, vmap[name][0]).__func__ if hasattr(getattr(cls, vmap[name][0]),'__func__') else getattr(cls, vmap[name][0]))
            import re
            m = re.search(r"(set\(\[.*?\]\)|re\.match\(r?\"(.*?)\")", src)
            extra = '  validator: ' + (m.group(0) if m else vmap[name][0])
        ann = f.annotation
        meta = ''.join(str(m) for m in f.metadata)
        print('%s%s %s: %s%s%s' % ('  '*ind, 'R' if req else 'o', key, tname(ann), (' '+meta) if meta else '', extra))
        for sub in inner_models(ann):
            if sub in seen: print('  '*(ind+1)+'(-> %s, see above)'%sub.__name__); continue
            print('  '*(ind+1)+'<%s>'%sub.__name__)
            walk(sub, ind+1, seen|{sub}, only_required)

COVERED = {
    # response bodies (2XX) of the endpoints test_klaviyo_sdk.py covers, then the 4XX/5XX body
    "GET /api/events": "GetEventResponseCollectionCompoundDocument",
    "GET /api/events/{id}/metric": "GetMetricResponse",
    "POST /api/profiles (201)": "PostProfileResponse",
    "GET /api/profiles": "GetProfileResponsePluralConversationsCollectionCompoundDocument",
    "GET /api/profiles/{id}": "GetProfileResponsePluralConversationsCompoundDocument",
    "PATCH /api/profiles/{id}": "PatchProfileResponse",
    "POST /api/profile-import (200/201)": "PostProfileResponse",
    "POST /api/lists (201)": "PostListCreateResponse",
    "GET /api/lists/{id}": "GetListRetrieveResponseCompoundDocument",
    "GET /api/lists/{id}/profiles": "GetListMemberResponseCollection",
    "POST /api/catalog-items (201)": "PostCatalogItemResponse",
    "PATCH /api/catalog-items/{id}": "PatchCatalogItemResponse",
    "GET /api/catalog-items/{id}": "GetCatalogItemResponseCompoundDocument",
    "any 4XX/5XX": "GetAccounts4XXResponse",
}
only = '--required' in sys.argv
names = [a for a in sys.argv[1:] if not a.startswith('--')]
if '--covered' in sys.argv:
    for ep, n in COVERED.items():
        print('=' * 8, ep, '->', n)
    print()
    names = list(dict.fromkeys(COVERED.values()))
for n in names:
    c = getattr(M, n)
    print('### %s' % n)
    walk(c, 0, {c}, only)
    print()
