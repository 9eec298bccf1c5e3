"""Fine-tuning and transfer learning: backbones, task heads, task data, and the recipe that composes them.

`finetune(cfg, run_dir)` trains (finetune/train.py); `predict_file` and `evaluate_task_run` use the result
(finetune/predict.py), with the task model at work in finetune/task.py. See docs/finetuning.md.
"""
