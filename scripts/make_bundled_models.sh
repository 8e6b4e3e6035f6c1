#!/usr/bin/env bash
# How the bundled models (rnnrbm_live/models/) and their checkpoints (checkpoints/) were
# made, command for command. Training runs on the CPU (2 cores here) took about 40 minutes
# each beside other work; the same seed on the same device gives the same checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."

# JSB Chorales: Adam, 8 whole chorales per update, CD-25, 250 hidden units, every chorale
# also moved by -3..+3 semitones; the best of 170 epochs on valid (quick AIS check).
rnnrbm-train --data jsb_chorales --out runs/jsb_c --epochs 300 --batch-size 8 --lr 1e-3 \
  --augment-semitones 3 --cd-k 25 --hidden 250 --valid-every 5 --patience 10 --threads 1
# (stopped with SIGTERM after epoch 171; best.safetensors is epoch 170)

# Nottingham: Adam, 8 whole tunes per update, CD-15, 150 hidden; 200 epochs, then resumed
# to 240; the best on valid (first 40 valid tunes) is epoch 235.
rnnrbm-train --data nottingham --out runs/nott_a --epochs 200 --batch-size 8 --lr 1e-3 \
  --valid-every 5 --valid-max-seqs 40 --patience 8 --threads 1
rnnrbm-train --data nottingham --out runs/nott_a --epochs 240 --batch-size 8 --lr 1e-3 \
  --valid-every 5 --valid-max-seqs 40 --patience 8 --threads 1 --resume

# Keep the checkpoints, then record the paper's measures on test in each checkpoint's card
# (AIS: 100 runs x 500 temperatures; ACC over the runs' weighted samples, and over 20
# chains of 200 Gibbs steps from silence) and export the three files of the contract
# (.onnx, .onnx.json, .safetensors) into the package. The step graphs run 200 Gibbs steps
# per frame (chosen on valid: the chain measure rises with the chain's length up to about there).
for pair in jsb_c:jsb_chorales nott_a:nottingham; do
  run=${pair%%:*} name=${pair##*:}
  mkdir -p checkpoints/$name
  cp runs/$run/best.safetensors runs/$run/best.json checkpoints/$name/
done
rnnrbm-eval checkpoints/jsb_chorales --data jsb_chorales --split test --runs 100 --temperatures 500 \
  --acc-samples 20 --acc-gibbs 200 --save-metrics --threads 1
rnnrbm-eval checkpoints/nottingham --data nottingham --split test --max-seqs 20 --runs 100 \
  --temperatures 500 --acc-samples 20 --acc-gibbs 200 --save-metrics --threads 1
for name in jsb_chorales nottingham; do
  rnnrbm-export checkpoints/$name/best.safetensors -o rnnrbm_live/models/$name --gibbs-steps 200
done
