"""``bge-integrations eval``: evaluate a model's retrieval modes on a BEIR-layout dataset.

It indexes the corpus (a ``HybridIndex`` for BGE-M3 models, a ``DenseIndex`` otherwise),
evaluates every mode (and, with ``--tune``, the fusion weights tuned on the dev split), prints
a table, and with ``-o NAME`` writes ``NAME.json`` (metrics, per-query values, significance
tests, tuning grid) and ``NAME.png`` (metrics per mode, tuned weight surface).

Example:
    $ bge-integrations eval my-beir-set --model BAAI/bge-m3 --tune -o report
    $ bge-integrations eval "$(python -c 'from bge_integrations.evaluation import \
sts_retrieval_dir; print(sts_retrieval_dir())')" --model BAAI/bge-small-en-v1.5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .argtypes import positive_int

__all__ = ["add_parser", "run_eval"]


def _k_values(value: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in value.split(","))
    except ValueError:
        values = ()
    if not values or min(values) <= 0:
        msg = f"expected comma-separated positive cutoffs such as 1,10,100, got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return values


def _modes(value: str) -> str | list[str]:
    return "all" if value == "all" else [m.strip() for m in value.split(",") if m.strip()]


def add_parser(subparsers: Any) -> None:
    """Add the ``eval`` subcommand to the ``bge-integrations`` parser."""
    from .app import _add_model_options

    parser = subparsers.add_parser(
        "eval", help="evaluate retrieval modes (and tuned fusion) on a BEIR-layout dataset",
        description="Index DATA_DIR/corpus.jsonl, search DATA_DIR/queries.jsonl with every mode "
                    "and score the runs against DATA_DIR/qrels/<split>.tsv with ranx: nDCG, "
                    "MRR, Recall and MAP at each cutoff. --tune chooses fusion weights on the "
                    "dev split (qrels/dev.tsv, else half of the split's queries) and reports "
                    "the held-out score.")
    parser.add_argument("data_dir", metavar="DATA_DIR",
                        help="BEIR layout: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    parser.add_argument("--split", default="test", help="qrels split to report (default test)")
    parser.add_argument("--modes", type=_modes, default="all",
                        help="all (default) or a comma list of dense, sparse, colbert, hybrid, "
                             "hybrid-rrf")
    parser.add_argument("-k", "--cutoffs", type=_k_values, default=(1, 3, 5, 10, 100),
                        metavar="K,K,...", help="metric cutoffs (default 1,3,5,10,100)")
    parser.add_argument("--tune", action="store_true",
                        help="tune the fusion weights and RRF constant (BGE-M3 models)")
    parser.add_argument("--metric", default="ndcg@10",
                        help="what --tune maximises (default ndcg@10)")
    parser.add_argument("--rerank", metavar="R", help="also rerank every mode with this "
                                                      "reranker model (hub id or directory)")
    parser.add_argument("--rerank-depth", type=positive_int, default=100,
                        help="documents the reranker re-orders (default 100)")
    parser.add_argument("-o", "--output", metavar="NAME",
                        help="write NAME.json and NAME.png")
    _add_model_options(parser)
    parser.set_defaults(handler=run_eval)


def _tuning_split(data_dir: str, split: str, qrels: dict[str, dict[str, int]]
                  ) -> tuple[dict[str, dict[str, int]], Any, str]:
    """``(qrels to tune with, split argument of tune, description)``: the dev qrels file when
    there is one (and it judges other queries), else half of the split's queries."""
    from ..evaluation.data import read_qrels

    dev_path = Path(data_dir).expanduser() / "qrels" / "dev.tsv"
    if split != "dev" and dev_path.is_file():
        dev = read_qrels(dev_path)
        if not dev.keys() & qrels.keys():
            return {**dev, **qrels}, (list(dev), list(qrels)), "qrels/dev.tsv"
    return dict(qrels), 0.5, f"a seeded half of the {split} queries"


def run_eval(args: argparse.Namespace) -> int:
    """The ``eval`` command: index, evaluate (tune, rerank), print, write files."""
    from ..evaluation import evaluate, load_beir, tune
    from ..evaluation.metrics import check_metric
    from ..evaluation.plot import headline_metrics, plot_report
    from ..evaluation.targets import as_target
    from ..evaluation.tune import check_tunable
    from .app import _core_options, _model_name, _note
    from .indexes import new_index

    if args.output is not None and not Path(args.output).expanduser().parent.is_dir():
        msg = f"the folder of -o {args.output!r} does not exist."
        raise FileNotFoundError(msg)
    data = load_beir(args.data_dir, split=args.split)
    index = new_index(_model_name(args), pooling=args.pooling,
                      trust_remote_code=args.trust_remote_code, **_core_options(args))
    modes = as_target(index).settings(args.modes)  # bad modes fail before indexing
    if args.tune:
        check_tunable(index)
        check_metric(args.metric)
    ids, texts = data.documents()
    index.add(texts, ids=ids)
    _note(f"indexed {len(ids)} documents ({type(index).__name__}); "
          f"{len(data.qrels)} judged {args.split} queries.")
    qrels, best = data.qrels, None
    if args.tune:
        tune_qrels, split, where = _tuning_split(args.data_dir, args.split, data.qrels)
        best = tune(index, data.queries, tune_qrels, metric=args.metric, split=split)
        qrels = {q: tune_qrels[q] for q in best.test_queries}
        if best.rrf_k is not None:
            index.rrf_k = best.rrf_k  # the tuned RRF constant, for the "tuned" row
        modes = {**modes, "tuned": dict(best)}
        _note(f"tuned on {where} ({len(best.dev_queries)} queries): {dict(best)}"
              + (f", rrf_k={best.rrf_k}" if best.rrf_k is not None else "")
              + f"; {args.metric} dev {best.dev_score:.4f}, test {best.test_score:.4f}.")
    reranker = _reranker(args) if args.rerank else None
    report = evaluate(index, data.queries, qrels, k=args.cutoffs, modes=modes,
                      rerank=reranker, rerank_depth=args.rerank_depth)
    report.extra["dataset"] = {"path": str(args.data_dir), "split": args.split,
                               "documents": len(ids), "model": args.model}
    if best is not None:
        report.extra["tuning"] = best.to_dict()
    print(report.table(headline_metrics(report)))
    if len(report.names) > 1:
        print("\nSignificance (ranx, paired t-test; a superscript marks a significant gain "
              "over the setting with that letter, p < 0.05):")
        print(report.compare(stat_test="student", max_p=0.05))
    if args.output is not None:
        base = Path(args.output).expanduser()
        report.save(base.with_name(base.name + ".json"))
        plot_report(report, base.with_name(base.name + ".png"), tuning=best)
        _note(f"wrote {base}.json and {base}.png.")
    sys.stdout.flush()
    return 0


def _reranker(args: argparse.Namespace) -> Any:
    """The ``--rerank`` model (a tiny random encoder reranker under ``--tiny``)."""
    from .. import BGEReranker
    from ..offline import tiny_model
    from .app import _core_options, _note

    model = args.rerank
    if args.tiny:
        model = tiny_model("xlm-roberta-reranker")
        _note(f"--tiny: reranking with a tiny random reranker ({model}).")
    return BGEReranker(model, trust_remote_code=args.trust_remote_code, **_core_options(args))
