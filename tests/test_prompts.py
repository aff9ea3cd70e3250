"""Prompt template: user prefix shared by all candidates, candidate suffix, deterministic truncation."""

from __future__ import annotations

import pytest

from mmsrarec_lib.recommend.prompts import (
    ANSWER_CUE,
    INSTRUCTION,
    Candidate,
    PromptConfig,
    answer,
    build_prefix,
    build_suffix,
    cut_text,
    dedup_keywords,
)


def test_prefix_renders_last_n_history_items_and_pooled_neighbour_keywords():
    cfg = PromptConfig(n_history=2, keywords_per_item=2, n_neighbors=2, neighbor_keywords=3)
    text = build_prefix(
        history_keywords=[["old"], ["a", "A ", "b", "c"], ["d"]],
        neighbor_keywords=[["x", "y"], ["y", "z", "w"], ["never"]],
        config=cfg,
    )
    assert text == (
        f"{INSTRUCTION}\nUser history (oldest first):\n1. a, b\n2. d\nSimilar users liked: x, y, z\n"
    )


def test_prefix_without_neighbours_says_none():
    text = build_prefix(history_keywords=[[]], neighbor_keywords=[], config=PromptConfig())
    assert text.endswith("1. (no keywords)\nSimilar users liked: (none)\n")


def test_token_budget_drops_oldest_history_then_last_neighbour_keywords():
    cfg = PromptConfig(n_history=3, max_prefix_tokens=1)
    words = lambda s: len(s.split())  # noqa: E731 - a whitespace "tokenizer"
    base = build_prefix(history_keywords=[["h1"], ["h2"], ["h3"]], neighbor_keywords=[["n1", "n2"]], config=cfg)
    budget = words(base) - 1  # one word too many: the oldest history item ("1. h1") must go
    cut = build_prefix(history_keywords=[["h1"], ["h2"], ["h3"]], neighbor_keywords=[["n1", "n2"]],
                       config=PromptConfig(n_history=3, max_prefix_tokens=budget), count_tokens=words)
    assert "h1" not in cut and "1. h2\n2. h3" in cut and "n1, n2" in cut
    tiny = build_prefix(history_keywords=[["h1"], ["h2"], ["h3"]], neighbor_keywords=[["n1", "n2"]],
                        config=PromptConfig(n_history=3, max_prefix_tokens=1), count_tokens=words)
    assert "1. h3\nSimilar users liked: (none)" in tiny  # the newest item always stays


def test_suffix_with_keywords_image_and_answer_cue():
    cfg = PromptConfig(keywords_per_item=2)
    cand = Candidate("i1", "Toy  Story", ("kids", "toys", "pixar"), has_image=True)
    assert build_suffix(candidate=cand, config=cfg) == (
        f"Candidate: Toy Story. Keywords: kids, toys\n<image>\n{ANSWER_CUE}"
    )
    no_img = PromptConfig(use_image=False)
    assert "<image>" not in build_suffix(candidate=cand, config=no_img)


def test_suffix_raw_text_ablation_is_cut_at_a_word_boundary():
    cfg = PromptConfig(max_candidate_chars=12)
    cand = Candidate("i1", "Heat", ("crime",), raw_text="A group of   professional bank robbers")
    assert build_suffix(candidate=cand, config=cfg) == f"Candidate: Heat. A group of...\n{ANSWER_CUE}"


def test_helpers_and_answers():
    assert dedup_keywords([" a ", "", "A", "b", "c"], 2) == ["a", "b"]
    assert cut_text("short", 10) == "short"
    assert answer(True) == " yes" and answer(False) == " no"
    with pytest.raises(ValueError, match="n_history"):
        PromptConfig(n_history=0)
