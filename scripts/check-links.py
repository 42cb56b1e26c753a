#!/usr/bin/env python3
"""check-links.py — every relative link in README.md and docs/*.md resolves: the file exists, and a
#anchor matches a heading of the target (GitHub style). Run by scripts/lint.sh.

    scripts/check-links.py [REPO_ROOT]
"""
import glob
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else '.'
os.chdir(root)
files = ['README.md'] + sorted(glob.glob('docs/*.md'))

def strip_code(text):
    # drop fenced blocks, keep line structure
    out = []; fence = False
    for l in text.split('\n'):
        if l.lstrip().startswith('```'):
            fence = not fence; out.append(''); continue
        out.append('' if fence else l)
    return '\n'.join(out)

def slug(h):
    h = h.strip().lower()
    h = re.sub(r'[^\w\- ]', '', h)   # punctuation dropped (keeps letters, digits, _, -, space)
    return h.replace(' ', '-')

def anchors(path):
    text = strip_code(open(path).read())
    seen = {}; out = set()
    for l in text.split('\n'):
        m = re.match(r'^(#{1,6})\s+(.*?)\s*#*\s*$', l)
        if not m: continue
        s = slug(m.group(2))
        n = seen.get(s, 0); seen[s] = n + 1
        out.add(s if n == 0 else f'{s}-{n}')
    return out

bad = 0; count = 0
for f in files:
    text = strip_code(open(f).read())
    for m in re.finditer(r'\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+"[^"]*")?\)', text.replace('\n', ' ')):
        target = m.group(1)
        if re.match(r'^[a-z]+:', target) or target.startswith('//'):
            continue
        count += 1
        path, _, frag = target.partition('#')
        base = os.path.dirname(f)
        dest = os.path.normpath(os.path.join(base, path)) if path else f
        if not os.path.exists(dest):
            print(f'{f}: {target}: no such file {dest}'); bad += 1; continue
        if frag:
            if not dest.endswith('.md'):
                print(f'{f}: {target}: anchor into a non-Markdown file'); bad += 1; continue
            if frag not in anchors(dest):
                print(f'{f}: {target}: no heading #{frag} in {dest}'); bad += 1
print(f'{count} relative links checked, {bad} broken')
sys.exit(1 if bad else 0)
