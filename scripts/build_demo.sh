#!/usr/bin/env bash
# Rebuild the whole built-in demo from scratch: synthetic cohort -> shipped cpu weights ->
# demo store with every scan scored by both models -> viewer maps for the scans a user opens
# first. Every step resumes when run again (a finished step is skipped). Run from the
# repository root. Times measured on a 2-core machine are in the README ("The built-in demo").
#
#   bash scripts/build_demo.sh                 # everything (about 5.5 hours on 2 CPU cores)
#   STEPS=score bash scripts/build_demo.sh     # only re-score with the shipped weights
#   SAMPLER=ddim:10 bash scripts/build_demo.sh
set -euo pipefail
SIZE=${SIZE:-128}           # in-plane matrix of the synthetic scans (the cpu models see 48-64)
SAMPLER=${SAMPLER:-x0}      # the fast sampler the demo is scored with (README: benchmark)
T0=${T0:-cmm=400,fgm=300}  # chosen on validation scans (README, "Shipped weights")
STEPS=${STEPS:-synth,train,score,maps}
COHORT=data/cohorts/demo
DB=data/demo/demo.duckdb
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
has() { [[ ",$STEPS," == *",$1,"* ]]; }

if has synth; then
    python -m guad synth --preset demo --size "$SIZE" --out "$COHORT"
fi

if has train; then
    # The shipped weights were trained in four stages on the cohort's 800 training normals, the
    # two models side by side, one core each. --end-at stops a run at that step of its (longer)
    # cosine schedule, which is where stages 1-3 were cut; stage 4 ran its whole schedule.
    # train MODEL OUT ARGS...: one cpu model on the cohort's training normals, in the background
    train() { python -m guad train --model "$1" --config "cpu-$1" --manifest "$COHORT/manifest.csv" \
                  --out "$2" --no-progress "${@:3}" & }
    # Stage 1: the configs' learning rates.
    train cmm runs/cmm --steps 2500 --end-at 1750 --ckpt-every 250
    train fgm runs/fgm --steps 1600 --end-at 1000 --ckpt-every 200
    wait
    # Stage 2: continued from stage 1's EMA, a fresh optimizer and a new cosine from 1e-4.
    train cmm runs/cmm2 --init runs/cmm/model.pt --lr 1e-4 --steps 3000 --end-at 3000 --ckpt-every 250
    train fgm runs/fgm2 --init runs/fgm/model.pt --lr 1e-4 --steps 1800 --end-at 1600 --ckpt-every 200
    wait
    # Stage 3 (a later, slower machine): continued from stage 2's EMA, again a fresh optimizer
    # and a cosine from 1e-4; stopped where the session's time ran out.
    train cmm runs/cmm3 --init runs/cmm2/model.pt --lr 1e-4 --steps 2800 --end-at 1600 --ckpt-every 100
    train fgm runs/fgm3 --init runs/fgm2/model.pt --lr 1e-4 --steps 1200 --end-at 800 --ckpt-every 100
    wait
    # Stage 4 (a third machine, whose CPU has AMX / AVX-512 BF16): continued from stage 3's EMA,
    # a fresh optimizer and a cosine from 1e-4, under bf16 autocast (2.3x faster a step there;
    # weights, optimizer and EMA stay fp32).
    train cmm runs/cmm4 --init runs/cmm3/model.pt --lr 1e-4 --steps 5000 --ckpt-every 100 --precision bf16
    train fgm runs/fgm4 --init runs/fgm3/model.pt --lr 1e-4 --steps 3000 --ckpt-every 100 --precision bf16
    wait
    mkdir -p data/weights
    cp runs/cmm4/model.pt data/weights/cpu-cmm.pt
    cp runs/fgm4/model.pt data/weights/cpu-fgm.pt
    cat runs/cmm{,2,3,4}/train_log.jsonl > data/weights/cpu-cmm.train_log.jsonl
    cat runs/fgm{,2,3,4}/train_log.jsonl > data/weights/cpu-fgm.train_log.jsonl
fi

if has score; then
    # every scan of the cohort (train, val and test splits), two processes sharing the work
    python -m torch.distributed.run --standalone --nproc_per_node 2 -m guad score \
        --manifest "$COHORT/manifest.csv" --db "$DB" --splits train,val,test \
        --sampler "$SAMPLER" --t0 "$T0" --batch 8
fi

if has maps; then
    # maps for the misses and false positives at the default points and a few of each class
    python -m guad maps --db "$DB" --select demo --out data/demo/maps --no-input --max-scans 400
fi
