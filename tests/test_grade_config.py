"""The grading engine's one config object, its generated CLI options, and the nbgrader chain it
configures (fast: no grading; the graded runs are in test_grade_parallel.py and test_hostile.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from autograder.grade import GradeConfig, StudentResult, add_config_options, config_from_args
from autograder.grade.outputs import CellInfo, plain_feedback_page
from autograder.grade.preprocessors import RepairMetadata
from autograder.judge.preprocessors import CapOutputs, JudgedExecute, graded_cells


def _options(parser: argparse.ArgumentParser) -> dict:
    return {a.dest: tuple(a.option_strings) for a in parser._actions if a.option_strings}


def test_engine_and_pipeline_share_one_option_definition():
    from autograder.grade.cli import parser

    engine = _options(parser())
    p = argparse.ArgumentParser()
    add_config_options(p, exclude=("assignment", "shard", "workdir"))
    pipeline = _options(p)
    assert pipeline and all(engine[dest] == flags for dest, flags in pipeline.items())
    assert engine["cell_timeout_s"] == ("--cell-timeout",) and engine["repair"] == ("--no-repair",)


def test_cli_maps_onto_the_fields():
    from autograder.grade.cli import parser

    args = parser().parse_args(["subs", "--workers", "3", "--no-repair", "--no-isolation",
                                "--keep-workdirs", "/tmp/k", "--shard", "1/4", "--cell-timeout", "7"])
    cfg = config_from_args(args)
    assert (cfg.workers, cfg.repair, cfg.isolation, cfg.shard, cfg.cell_timeout_s) == (3, False, "none",
                                                                                         "1/4", 7)
    assert cfg.keep_workdirs and cfg.workdir == Path("/tmp/k")
    assert config_from_args(parser().parse_args(["subs"])) == GradeConfig()
    with pytest.raises(ValueError, match="--workers"):
        config_from_args(parser().parse_args(["subs", "--workers", "0"]))
    with pytest.raises(ValueError, match="--shard"):
        config_from_args(parser().parse_args(["subs", "--shard", "4/4"]))
    assert GradeConfig.from_json(cfg.to_json()) == cfg


def test_nbgrader_config_inserts_the_engine_steps(tmp_path):
    from nbgrader.preprocessors import Execute, SaveAutoGrades

    cfg = GradeConfig(cell_timeout_s=9)
    c = cfg.nbgrader_config(tmp_path, steps={"report": "r", "source_notebooks": {"a": "a.ipynb"},
                                             "records": "j.jsonl", "socket_dir": "/s"})
    assert c.Execute.timeout == 9 and c.Execute.shutdown_kernel == "immediate"
    assert c.Autograde.sanitize_preprocessors[0] is RepairMetadata
    chain = c.Autograde.autograde_preprocessors
    assert Execute not in chain and chain.index(JudgedExecute) + 1 == chain.index(CapOutputs)
    assert chain.index(CapOutputs) < chain.index(SaveAutoGrades)  # nbgrader scores the judge's outputs
    assert c.JudgedExecute.records == "j.jsonl" and c.JudgedExecute.socket_dir == "/s"
    steps = {"report": "r", "source_notebooks": {}}
    no_repair = GradeConfig(repair=False).nbgrader_config(tmp_path, steps=steps)
    assert RepairMetadata not in no_repair.Autograde.sanitize_preprocessors
    assert JudgedExecute in no_repair.Autograde.autograde_preprocessors  # the judge always runs


def test_graded_cells_reads_the_test_cells():
    from cfgflow.course import META_KEY

    def cell(src, part="", **meta):
        return new_code_cell(src, metadata={"nbgrader": {"grade_id": meta.pop("gid"), **meta},
                                            META_KEY: {"part": part}})

    nb = new_notebook(cells=[
        cell('check("mha", MHA, points=3)', "mha", gid="t1", grade=True, points=3),
        cell('### BEGIN HIDDEN TESTS\ncheck("dit", DiT, points=2, hidden=True)\n### END HIDDEN TESTS', "dit",
             gid="t2", grade=True, points=2),
        cell('check(x, points=1)', gid="t4", grade=True),  # names no part: not judged
        cell('check("sol", 1)', "sol", gid="s1", grade=True, solution=True),  # a solution cell
    ])
    found = graded_cells(nbformat.from_dict(nb))
    assert {g: (s.part, s.hidden, s.points) for g, s in found.items()} == {"t1": ("mha", False, 3.0),
                                                                            "t2": ("dit", True, 2.0)}


def test_plain_feedback_page_escapes_the_notes():
    cells = [CellInfo("nb", "test_a", 2.0)]
    r = StudentResult("bob", status="timeout", reason="stopped <after> 5 s", notes=["it's <b>"],
                      scores={"nb/test_a": 0.0})
    page = plain_feedback_page(r, cells, "01_cfg")
    assert '<div id="cfgflow-grading-notes"' in page and "01_cfg: 0 / 2 points" in page
    assert "<b>timeout</b>: stopped &lt;after&gt; 5 s" in page and "<li>it&#x27;s &lt;b&gt;</li>" in page
    assert "<td>test_a</td><td>0 / 2</td>" in page
