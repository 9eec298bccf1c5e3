"""The bad-input campaign counted per verb, from the parametrisations of its test modules, printed as the table
docs/RELIABILITY.md quotes (`pytest tests/robustness/test_campaign_summary.py -s`, or in any run's output), and
held to the issue's floor: at least 300 distinct bad inputs, and every verb that reads user input tried."""

from collections import Counter

import test_bad_compare_and_bench as compare_bench
import test_bad_config as config
import test_bad_corpora as corpora
import test_bad_plan as plan
import test_bad_usage as usage
import test_bad_runs as runs
import test_bad_score_files as scores
import test_bad_tasks as tasks

RUN_VERBS = {"resume": "train --resume"}
TASK_VERBS = {"train": "finetune", "val": "finetune", "eval": "eval", "predict": "predict"}
EVERY_VERB = {"clean", "curate", "augment", "prepare", "train", "train --resume", "eval", "generate", "finetune",
              "predict", "score", "export", "bakeoff", "config show", "report", "compare", "bench-gemm", "plan"}


def per_verb() -> Counter:
    counts: Counter = Counter()
    counts.update(verb for verb, _ in corpora.CASES)
    counts.update({"config show": len(config.SCHEMA) + len(config.RECIPES)})
    counts.update({verb: len(config.PER_VERB) for verb in config.CONFIG_VERBS})
    counts.update({verb: len(config.RECIPES) for verb in ("train", "prepare", "bakeoff", "finetune")})
    counts.update(RUN_VERBS.get(verb, verb) for verb, _, _ in runs.CASES)
    counts.update(TASK_VERBS[place] for place, _ in tasks.CASES)
    counts.update({"score": len(scores.CASES)})
    counts.update({"compare": len(compare_bench.RUN_CASES) + len(compare_bench.OPTION_CASES),
                   "bench-gemm": len(compare_bench.BENCH_OPTIONS) + len(compare_bench.CACHE_DAMAGE)})
    counts.update({"plan": len(plan.RECIPES) + len(plan.OVERRIDES) + len(plan.OPTIONS)})
    counts.update(verb if verb != "nosuch" else "(no verb)" for verb, _, _ in usage.CASES)
    return counts


def test_the_campaign_tries_every_verb_and_300_bad_inputs(capsys):
    counts = per_verb()
    with capsys.disabled():
        print("\nbad inputs tried, per verb (each refused in one line, exit 2, nothing left that looks finished; or, where "
              "docs/RELIABILITY.md says so, repaired and counted)")
        for verb, n in counts.most_common():
            print(f"  {verb:<16} {n:>5}")
        print(f"  {'total':<16} {sum(counts.values()):>5}  (besides {config.FUZZ_EXAMPLES} fuzzed settings through "
              f"config show, which load or are refused in one line)")
    assert EVERY_VERB <= set(counts), EVERY_VERB - set(counts)
    assert min(counts[v] for v in EVERY_VERB) >= 5
    assert sum(counts.values()) >= 300
