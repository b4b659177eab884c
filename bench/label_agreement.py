"""How often CCSN gives the same photo the same label: a floor under any classifier's error on it.

Pairs of photos in the ten genera (Ct left out) in one near-duplicate group of the dedupe stage (pHash), split into
pixel-identical pairs (mean absolute difference under 4/255 at 64x64 px: the same photo, re-saved) and the rest;
for each, how many carry the same genus.

  python bench/label_agreement.py
"""
import json, sys
from itertools import combinations
from pathlib import Path
import numpy as np
from PIL import Image
sys.path.insert(0, str(Path(__file__).parent))
from train import near_duplicate_groups, CCSN, GENERA10
from cloud_classifier.data import class_files

def pixels(f): return np.asarray(Image.open(f).convert('RGB').resize((64, 64)), dtype=np.float32)

def main():
    files = [f for fs in class_files(CCSN, GENERA10).values() for f in fs]
    groups = {}
    for f, g in near_duplicate_groups(files).items(): groups.setdefault(g, []).append(Path(f))
    same, similar = [], []
    for fs in groups.values():
        px = {f: pixels(f) for f in fs}  # each photo decoded once
        for a, b in combinations(fs, 2):
            (same if np.abs(px[a] - px[b]).mean() < 4 else similar).append(a.parent.name == b.parent.name)
    out = dict(photos=len(files), groups=len(groups), identical_pairs=len(same), identical_same_label=sum(same),
               similar_pairs=len(similar), similar_same_label=sum(similar),
               mixed_groups=sum(len({f.parent.name for f in fs}) > 1 for fs in groups.values()))
    print(json.dumps(out))

if __name__ == '__main__': main()
