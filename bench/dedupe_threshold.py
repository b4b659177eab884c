"""Measure perceptual-hash distances on real photos, to choose dedupe's hash and threshold.

    flock /tmp/cc-bench.lock python bench/dedupe_threshold.py [PHOTOS] [--copies 400]

For each hash (pHash, the one used, and dHash, aHash, wHash for comparison): the distance between
sampled photos and their resized / re-encoded / cropped copies, and how many pairs of distinct files
fall within each distance. PHOTOS defaults to ../shared/data/ccsn (Zhang et al. 2018, GRL,
doi:10.1029/2018GL077787)."""
import argparse, os, sys, time
from pathlib import Path
import numpy as np, imagehash
from cloud_classifier.dedupe import THRESHOLD, hash_distances, perceptual_hash
from cloud_classifier.images import image_files

HASHES = {'phash': perceptual_hash,
          'dhash': lambda im: int(str(imagehash.dhash(im)), 16),
          'ahash': lambda im: int(str(imagehash.average_hash(im)), 16),
          'whash': lambda im: int(str(imagehash.whash(im)), 16)}

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('photos', nargs='?', type=Path, help='folder of photos ($CLOUD_CLASSIFIER_DATA or ../shared/data/ccsn)',
                   default=Path(os.environ.get('CLOUD_CLASSIFIER_DATA') or Path(__file__).resolve().parents[2]/'shared'/'data'/'ccsn'))
    p.add_argument('--copies', type=int, default=400, help='photos that get copied')
    p.add_argument('--hashes', nargs='+', default=list(HASHES))
    a = p.parse_args()
    if not a.photos.is_dir() or not (files := image_files(a.photos, recurse=True)):
        sys.exit(f'error: no photos in {a.photos}: give a folder of photos')
    print(f'{len(files)} photos in {a.photos}; {a.copies} copied; threshold in use: pHash <= {THRESHOLD}')
    for name in a.hashes:
        t = time.time()
        d = hash_distances(files, a.copies, hash_fn=HASHES[name])
        print(f'\n{name} ({time.time() - t:.0f} s)')
        print(f"  {'copy':<28}{'median':>7}{'p99':>5}{'max':>5}  share within {THRESHOLD}")
        for k, v in d['copies'].items():
            print(f'  {k:<28}{np.median(v):>7.0f}{np.percentile(v, 99):>5.0f}{v.max():>5}  {(v <= THRESHOLD).mean():.3f}')
        dd = d['distinct']
        print(f'  distinct pairs: {len(dd)}; within distance k: ' + ', '.join(f'{k}: {int((dd <= k).sum())}' for k in (0, 2, 4, 6, 8, 10, 12, 14)))

if __name__ == '__main__': main()
