"""Keyword parsing on messy model output."""

from __future__ import annotations

import pytest

from mmsrarec_lib.summarize.parsing import parse_keywords


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("space, toys, cowboy", ["space", "toys", "cowboy"]),
        ("Keywords: Space; TOYS;  Cowboy  ", ["space", "toys", "cowboy"]),
        ("Here are the keywords:\n1. Pixar\n2) Toys\n- \"Animation\"\n* **friendship**",
         ["pixar", "toys", "animation", "friendship"]),
        ("toys, Toys, TOYS , toys.", ["toys"]),
        ("sci-fi / horror | aliens • space", ["sci-fi", "horror", "aliens", "space"]),
        (",,, ;; \n ... !!", []),
        ("", []),
        ("war, this sentence is much too long to be a keyword at all, hero", ["war", "hero"]),
        ("“Quoted” , 'single' , `code`", ["quoted", "single", "code"]),
        ("new york city, New  York   City", ["new york city"]),
    ],
)
def test_parse_keywords(raw, expected):
    assert parse_keywords(raw) == expected


def test_cap_and_order():
    raw = ", ".join(f"k{i}" for i in range(20))
    assert parse_keywords(raw, max_keywords=3) == ["k0", "k1", "k2"]
    with pytest.raises(ValueError):
        parse_keywords("a", max_keywords=0)
