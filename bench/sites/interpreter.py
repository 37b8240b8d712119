"""An interpreter workload for bench/sites: CPython run with PYTHONMALLOC=malloc, so every
object it makes is a malloc call (thousands of sites, most behind the same few allocating
functions: the rules need 2-3 frames). Parsing, formatting, containers, regexes, sorting.

    PYTHONMALLOC=malloc python3 interpreter.py ITERATIONS   prints a checksum"""
import collections, json, re, sys
n = int(sys.argv[1])
WORD = re.compile(r"[a-z]+(\d+)")
acc = 0
for i in range(n):
    d = {f"k{j}": [j, str(j), (j, j + 1), {"x": j, "y": float(j) / 3}] for j in range(150)}
    s = json.dumps(d)
    e = json.loads(s)
    acc += len(s) + sum(len(v[1]) for v in e.values())
    words = sorted(set(s.split(",")), key=len)
    acc += len(words)
    c = collections.Counter(m.group(1) for m in WORD.finditer(s))
    acc += sum(c.values())
    lines = "\n".join("%05d|%s|%.3f" % (j, w, j / 7) for j, w in enumerate(words[:200]))
    acc += sum(int(x.split("|")[0]) for x in lines.splitlines())
    q = collections.deque(maxlen=64)
    for j in range(300):
        q.append((j, "v" * (j % 17), [j] * (j % 5)))
    acc += len(q) + len(bytes(lines, "utf-8").upper())
    acc += len({frozenset((j, j + 1)) for j in range(100)})
print(acc)
