"""Prompt-lookup drafting (synthloop.llm.embedded._lookup_draft): the guess is what followed the
latest, longest earlier occurrence of the context's last tokens."""
from __future__ import annotations

from synthloop.llm.embedded import _lookup_draft


def test_the_longest_ngram_match_wins_over_a_later_shorter_one() -> None:
    ctx = [1, 2, 3, 9, 9, 7, 4, 2, 3, 5, 5, 1, 2, 3]
    # the bigram (2, 3) last occurred at 7 (followed by 5, 5), but the trigram (1, 2, 3) at 0 is longer
    assert _lookup_draft(ctx, 3) == [9, 9, 7]


def test_the_latest_occurrence_is_copied() -> None:
    ctx = [4, 5, 1, 4, 5, 2, 8, 4, 5]
    assert _lookup_draft(ctx, 2) == [2, 8]


def test_a_single_shared_token_is_no_guess_and_k_bounds_the_guess() -> None:
    assert _lookup_draft([1, 2, 3, 4, 2], 4) == []  # only "2" recurs: below the minimum n-gram
    assert _lookup_draft([1, 2, 3, 4, 5, 1, 2], 0) == []
    assert _lookup_draft([1, 2, 3, 4, 5, 1, 2], 2) == [3, 4]
    assert _lookup_draft([7, 8], 3) == []


def test_a_guess_stops_at_the_end_of_the_context() -> None:
    assert _lookup_draft([6, 1, 2, 9, 1, 2], 5) == [9, 1, 2]
