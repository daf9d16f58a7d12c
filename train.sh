#!/usr/bin/env bash
# Main job.
#   bash train.sh                                    demo: MixCLDehazeNet-T on synthetic haze, then its evaluation
#   bash train.sh CONFIG [key=value ...] [--resume]  train with a config, e.g. configs/reside6k/mixdehazenet-t.yaml
# Sets up .venv on first use. Runs on all visible GPUs of this machine (CUDA_VISIBLE_DEVICES selects them),
# else on the CPU. Several machines: see docs/configuration.md, "Multi-GPU and multi-node training".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bash scripts/setup_env.sh
python="${MIXCL_VENV:-.venv}/bin/python"

if [ $# -gt 0 ]; then
  # One process per visible GPU (torchrun, DistributedDataParallel); a single process otherwise. When a worker
  # fails, torchrun restarts them all (up to 3 times) and they continue from the run's last.pt.
  gpus="$("$python" -c 'import torch; print(torch.cuda.device_count())')"
  if [ "$gpus" -gt 1 ]; then
    exec "$python" -m torch.distributed.run --standalone --nproc_per_node="$gpus" --max-restarts=3 train.py "$@"
  fi
  exec "$python" train.py "$@"
fi

config=configs/demo/mixcl-t.yaml
run_dir=runs/demo/mixcl-t
if [ -e "$run_dir" ]; then
  kept="$run_dir.$(date +%Y%m%d-%H%M%S)"
  echo "A previous demo run is in $run_dir; keeping it as $kept"
  mv "$run_dir" "$kept"
fi
"$python" train.py "$config"
"$python" test.py --checkpoint "$run_dir/best.pt" --data synthetic --out "$run_dir/test"
