"""The SSL recipe search behind the cpu profiles: MoCo-v2 (or +TP) for N steps, probed on val.

A plain loop over geolab's own pieces (MoCoModel, the lightly InfoNCE with a memory bank,
decode_images, BatchMoCoV2View, LocationIndex for temporal positives, extract_features and
linear_probe), without checkpoints or records, so that one setting costs only its training
steps. It scores the **val** split (tuning never looks at test) of a development world; the
numbers in BENCHMARKS.md ("SSL recipe") come from it, on dev world 101.

    .venv/bin/python bench/bench_ssl_recipe.py --manifest M --arch resnet18-w32 --steps 1000 \
        --queue 512 --lr 0.03 --min_scale 0.4 --cj 0.5 [--tp 1]

``--steps 0`` probes the untrained backbone (random init). ``--log FILE`` appends the JSON line.
"""
import torch, time, numpy as np, sys, json, argparse
from geolab.models import MoCoModel, build_contrastive_loss, make_backbone
from geolab.manifest import load_manifest, select_split
from geolab.datasets import decode_images, label_names
from geolab.positives import LocationIndex
from geolab.transforms import _Normalize, BatchMoCoV2View
from geolab.evaluate import extract_features, linear_probe, knn
p = argparse.ArgumentParser()
for k, v in dict(manifest="", arch="resnet18-w16", T=0.2, lr=0.06, steps=300, queue=1024, m=0.99, min_scale=0.2, cj=1.0,
                 bs=128, opt="sgd", wd=1e-4, tp=0, seed=0, size=32, cos=1, splits=8, threads=0, crop=0, tag="", log="").items():
    p.add_argument("--" + k, type=type(v), default=v)
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
if not a.manifest:  # the development world the recipe was tuned on (never the course's world 0)
    from geolab.world import load_world

    a.manifest = str(load_world(seed=101, locations=1000, size=32))
torch.manual_seed(a.seed); np.random.seed(a.seed)
full = load_manifest(a.manifest); classes = label_names(full)
df = select_split(full, "train")
imgs = decode_images(df, a.size, progress=False)
index = LocationIndex(df)
aug = BatchMoCoV2View(a.crop or a.size, min_scale=a.min_scale, cj_strength=a.cj)  # --crop: train on smaller views
model = MoCoModel(a.arch, geo_k=0, bn_splits=a.splits)
crit = build_contrastive_loss(a.T, a.queue)
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.SGD(params, lr=a.lr, momentum=0.9, weight_decay=a.wd) if a.opt == "sgd" else torch.optim.AdamW(params, lr=a.lr, weight_decay=a.wd)
model.train(); t0 = time.time(); losses = []
rng = np.random.default_rng(a.seed)
for step in range(a.steps):
    lr = a.lr * (0.5 * (1 + np.cos(np.pi * step / a.steps)) if a.cos else 1)
    for g in opt.param_groups: g["lr"] = lr
    idx = rng.choice(len(imgs), a.bs, replace=False)
    kidx = index.positives(idx, "any-other", rng) if a.tp else idx
    q, k = aug(imgs[idx]), aug(imgs[kidx])
    model.momentum_update(a.m)
    qq, kk, _ = model(q, k)
    loss = crit(qq, kk)
    opt.zero_grad(); loss.backward(); opt.step()
    losses.append(loss.item())
tt = time.time() - t0
bb = model.backbone.eval()
fx = {s: extract_features(bb, select_split(full, s), a.size, classes=classes, device="cpu", progress=False) for s in ("train", "val")}
pr = linear_probe(*fx["train"], *fx["val"])["top1"]; kn = knn(*fx["train"], *fx["val"])["top1"]
csweep = {c: round(linear_probe(*fx["train"], *fx["val"], C=c)["top1"], 4) for c in (0.001, 0.003, 0.01, 0.03, 0.1)}
L = np.array(losses); ch = [round(float(L[i:i + 25].mean()), 2) for i in range(0, len(L), max(25, len(L) // 8))] if len(L) else []
out = dict(tag=a.tag, **{k: v for k, v in vars(a).items() if k not in ("manifest", "tag", "log", "threads")}, train_s=round(tt), loss=ch, val_probe=round(pr, 4), val_knn=round(kn, 4), csweep=csweep)
print(json.dumps(out), flush=True)
if a.log:
    with open(a.log, "a") as fh:
        fh.write(json.dumps(out) + "\n")
