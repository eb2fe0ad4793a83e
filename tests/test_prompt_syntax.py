"""A1111 prompt syntax (studio.prompts.syntax) and styles (studio.prompts.styles): what a user of A1111 expects."""

from __future__ import annotations

import logging
import os
import time

import pytest

from studio.prompts.styles import Style, StyleLibrary, apply_style_text
from studio.prompts.syntax import (
    BREAK_WEIGHT,
    NetworkTag,
    extract_network_tags,
    parse_emphasis,
    prompt_schedule,
    schedule_index,
)


def same(got, expected):
    assert [text for text, _ in got] == [text for text, _ in expected]
    assert [weight for _, weight in got] == pytest.approx([weight for _, weight in expected], rel=1e-12)


# --- emphasis: A1111's parse_prompt_attention doctests -----------------------------------------------------------


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        ("(unbalanced", [("unbalanced", 1.1)]),
        ("\\(literal\\]", [("(literal]", 1.0)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [("a ", 1.0), ("house", 1.573), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
             (", sun, ", 1.1), ("sky", 1.4641), (".", 1.1)],
        ),
    ],
)
def test_emphasis_matches_a1111_doctests(prompt, expected):
    """The examples A1111 documents in parse_prompt_attention."""
    same(parse_emphasis(prompt), expected)


def test_emphasis_floats_are_a1111s_exactly():
    """Equal-weight pieces merge (which changes tokenization), so the floats must be A1111's to the bit."""
    got = dict(parse_emphasis("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."))
    assert got["house"] == 1.5730000000000004 and got["sky"] == 1.4641000000000006
    # Mixed nesting: A1111 multiplies in closing order and merges these two pieces.
    assert parse_emphasis("((best))([((red))])") == [("bestred", 1.2100000000000002)]


def test_emphasis_weights_nest_and_square_brackets_divide():
    """(x:w) sets the factor, nesting multiplies, [x] divides by 1.1, whitespace around the number is allowed."""
    same(parse_emphasis("((a:2) b)"), [("a", 2.2), (" b", 1.1)])
    same(parse_emphasis("[[a]]"), [("a", 1 / 1.1 / 1.1)])
    same(parse_emphasis("(a: 1.5 )"), [("a", 1.5)])
    same(parse_emphasis("(a:0)"), [("a", 0.0)])


def test_emphasis_strays_and_escapes_are_text():
    """A closer with no opener and an escaped bracket are plain text; a colon without a weight is text."""
    same(parse_emphasis("a) b] c"), [("a) b] c", 1.0)])
    same(parse_emphasis("\\(a\\) \\[b\\] \\\\"), [("(a) [b] \\", 1.0)])
    same(parse_emphasis("(a:b)"), [("a:b", 1.1)])
    same(parse_emphasis("x:1.2)"), [("x:1.2)", 1.0)])  # nothing open to close
    same(parse_emphasis("(x:1.2.3)"), [("x:1.2.3", 1.1)])  # A1111 crashes here; we keep the text


def test_empty_prompt_is_one_empty_piece():
    """A1111 never returns an empty list."""
    assert parse_emphasis("") == [("", 1.0)]
    assert parse_emphasis("()[]") == [("", 1.0)]


def test_break_is_a_chunk_marker():
    """BREAK as a word splits the prompt into chunks; whitespace around it goes; inside words it is text."""
    assert parse_emphasis("a BREAK b") == [("a", 1.0), ("BREAK", BREAK_WEIGHT), ("b", 1.0)]
    assert parse_emphasis("aBREAK b") == [("aBREAK b", 1.0)]
    assert parse_emphasis("a break b") == [("a break b", 1.0)]


def test_break_inside_brackets_stays_a_break():
    """A1111 multiplies its BREAK marker by the brackets and then misses the break; ours is always a break."""
    got = parse_emphasis("(a BREAK b)")
    assert got == [("a", pytest.approx(1.1)), ("BREAK", BREAK_WEIGHT), ("b", pytest.approx(1.1))]
    got = parse_emphasis("(a BREAK:-1)")  # a piece weighted -1 must still not merge into the break
    assert [text for text, _ in got] == ["a", "BREAK", ""]


# --- prompt editing and alternation: A1111's get_learned_conditioning_prompt_schedules doctests ------------------


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("test", [(10, "test")]),
        ("a [b:3]", [(3, "a "), (10, "a b")]),
        ("a [b: 3]", [(3, "a "), (10, "a b")]),
        ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
        ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
        ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
        ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
        ("a [unbalanced", [(10, "a [unbalanced")]),
        ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
        ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
        ("[a|(b:1.1)]", [(t, "a" if t % 2 else "(b:1.1)") for t in range(1, 11)]),
        ("[fe|]male", [(t, "female" if t % 2 else "male") for t in range(1, 11)]),
        ("[fe|||]male", [(t, "female" if t % 4 == 1 else "male") for t in range(1, 11)]),
    ],
)
def test_schedule_matches_a1111_doctests(prompt, expected):
    """A1111's documented schedules over 10 steps."""
    assert prompt_schedule(prompt, 10) == expected


def test_schedule_doctest_that_a1111_itself_fails():
    """A1111 documents "a [{b|d{:.5] c" -> [[5, 'a  c'], [10, 'a {b|d{ c']] ("not handling this right now"), but
    its grammar rejects the stray "|" and returns the prompt unchanged; so do we."""
    assert prompt_schedule("a [{b|d{:.5] c", 10) == [(10, "a [{b|d{:.5] c")]


def test_when_below_one_is_a_fraction_otherwise_a_step():
    """The rule used here (A1111's "old scheduling"). A1111's newer default instead reads any number with a "."
    as a fraction, so [b:1.5] would mean 15 steps (capped at 10) there, but step 1 here."""
    assert prompt_schedule("a [b:1.5] c", 10) == [(1, "a  c"), (10, "a b c")]
    assert prompt_schedule("[cat:dog:0.25]", 20) == [(5, "cat"), (20, "dog")]
    assert prompt_schedule("[cat:dog:50]", 20) == [(20, "cat")]  # capped: the switch never happens
    assert prompt_schedule("[cat:dog:0]", 20) == [(20, "dog")]  # never "from"


def test_a1111_prompt_editing_example():
    """The example in A1111's prompt_parser header comment, at 100 steps."""
    prompt = (
        "fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]"
        "[ in foreground::0.6][ in background:0.25] [shoddy:masterful:0.5]"
    )
    assert prompt_schedule(prompt, 100) == [
        (25, "fantasy landscape with a mountain and an oak in foreground shoddy"),
        (50, "fantasy landscape with a lake and an oak in foreground in background shoddy"),
        (60, "fantasy landscape with a lake and an oak in foreground in background masterful"),
        (75, "fantasy landscape with a lake and an oak in background masterful"),
        (100, "fantasy landscape with a lake and a christmas tree in background masterful"),
    ]


def test_alternation_cycles_every_step_and_nests():
    """[a|b|c] changes every step; an edit inside an option still switches at its step."""
    assert [text for _, text in prompt_schedule("[cat|dog|fox]", 4)] == ["cat", "dog", "fox", "cat"]
    assert prompt_schedule("[[red:blue:2] cat|dog]", 4) == [(1, "red cat"), (2, "dog"), (3, "blue cat"), (4, "dog")]


def test_unparsable_prompts_are_left_alone():
    """A "|" outside an alternation or a dangling escape makes A1111's grammar reject the whole prompt."""
    assert prompt_schedule("a|b [c:3]", 10) == [(10, "a|b [c:3]")]
    assert prompt_schedule("[a:3] \\", 10) == [(10, "[a:3] \\")]
    assert prompt_schedule("[a:b:c:3]", 10) == [(10, "[a:b:c:3]")]  # parses, but as plain text


def test_escaped_brackets_are_not_syntax():
    """\\[ and \\] stay literal through scheduling, for the emphasis parser to unescape."""
    assert prompt_schedule("\\[a:3\\] [b:3]", 10) == [(3, "\\[a:3\\] "), (10, "\\[a:3\\] b")]


def test_schedule_index_picks_the_conditioning_for_a_step():
    """Step s (0-based) uses the first entry with s <= end_at_step, as A1111's reconstruct_cond_batch."""
    schedule = prompt_schedule("[cat:dog:0.5]", 10)  # [(5, "cat"), (10, "dog")]
    assert [schedule_index(schedule, s) for s in range(10)] == [0] * 6 + [1] * 4
    assert schedule_index(schedule, 99) == 0  # past the end A1111 falls back to the first entry


# --- extra-network tags ------------------------------------------------------------------------------------------


def test_lora_tags_are_removed_and_read():
    """<lora:name:te:unet>: unet defaults to te, te to 1; every tag leaves the prompt text."""
    prompt = "a cat <lora:add_detail:0.7>, <LoRA:film:0.5:0.2> <lyco:x> <hypernet:h:2>"
    text, tags, warnings = extract_network_tags(prompt)
    assert text == "a cat , " + "  "
    assert tags == [
        NetworkTag("lora", "add_detail", 0.7, 0.7, "<lora:add_detail:0.7>"),
        NetworkTag("lora", "film", 0.5, 0.2, "<LoRA:film:0.5:0.2>"),
        NetworkTag("lyco", "x", 1.0, 1.0, "<lyco:x>"),
        NetworkTag("hypernet", "h", 2.0, 2.0, "<hypernet:h:2>"),
    ]
    assert warnings == []


def test_lora_named_arguments():
    """As A1111's ExtraNetworkParams: "k=v" items are named, te= / unet= override the positional ones."""
    _, tags, _ = extract_network_tags("<lora:a:te=0.5:unet=0.7><lora:b:0.3:unet=0.9><lora:c:unet=0.2><lora:d:te=0.4>")
    assert [(t.name, t.te_multiplier, t.unet_multiplier) for t in tags] == [
        ("a", 0.5, 0.7), ("b", 0.3, 0.9), ("c", 1.0, 0.2), ("d", 0.4, 0.4),
    ]


def test_bad_multiplier_keeps_default_and_warns():
    """An unreadable weight is not fatal: the default is used and the user is told."""
    text, tags, warnings = extract_network_tags("x <lora:style:strong> <lora:y:nan>")
    assert text == "x  "
    assert [(t.name, t.te_multiplier, t.unet_multiplier) for t in tags] == [("style", 1.0, 1.0), ("y", 1.0, 1.0)]
    assert len(warnings) == 2 and "strong" in warnings[0]


def test_text_that_only_looks_like_a_tag_stays():
    """No colon, or nothing after it, is not a tag."""
    assert extract_network_tags("<lora> <lora:> a > b")[0] == "<lora> <lora:> a > b"


# --- hostile input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    [
        "(" * 10000,
        "[" * 10000 + "a:b:1" + "]" * 10000,
        "(a" * 10000,
        "[a|" * 5000 + "]" * 5000,
        "[a|b]" * 4000,
        " " * 20000 + "x",
        "<lora:" * 3000,
        ":1" * 10000,
        "\\" * 20000,
    ],
    ids=lambda prompt: repr(prompt[:12]),
)
def test_hostile_prompts_return_quickly(prompt):
    """Deep nesting and long runs must neither recurse nor backtrack: well under a second each (about 0.08 s for the
    slowest here; best of three, so a busy machine does not make it fail — a blow-up would take far longer)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        parse_emphasis(prompt)
        prompt_schedule(prompt, 20)
        extract_network_tags(prompt)
        best = min(best, time.perf_counter() - start)
    assert best < 1.0


# --- styles ------------------------------------------------------------------------------------------------------


def test_style_text_merging():
    """{prompt} is a placeholder; without it the style is appended with ", " and empty parts are dropped."""
    assert apply_style_text("photo of {prompt}, 35mm", "a cat") == "photo of a cat, 35mm"
    assert apply_style_text("masterpiece ", " a cat ") == "a cat, masterpiece"
    assert apply_style_text("masterpiece", "") == "masterpiece"
    assert apply_style_text("", " a cat ") == "a cat"


def write(path, text):
    path.write_text(text, encoding="utf-8")


def test_styles_apply_in_order_and_report_missing(tmp_path):
    """Several styles apply one after another to prompt and negative; unknown names come back, change nothing."""
    path = tmp_path / "styles.csv"
    write(path, 'name,prompt,negative_prompt\nCinema,"cinematic still of {prompt}, film grain",blurry\n'
                'Sharp,"sharp focus","lowres, {prompt}"\n,"nameless row",x\n')
    library = StyleLibrary(path)
    assert library.styles() == [
        Style("Cinema", "cinematic still of {prompt}, film grain", "blurry"),
        Style("Sharp", "sharp focus", "lowres, {prompt}"),
    ]
    assert library.apply("a cat", "ugly", ["Cinema", "Nope", "Sharp"]) == (
        "cinematic still of a cat, film grain, sharp focus",
        "lowres, ugly, blurry",
        ["Nope"],
    )


def test_styles_file_with_bom_and_spaces(tmp_path):
    """A1111 (and spreadsheets) write a byte-order mark; spaces after commas are skipped as A1111 does."""
    path = tmp_path / "styles.csv"
    path.write_bytes("\ufeffname, prompt, negative_prompt\nA, b, c\n".encode("utf-8"))
    assert StyleLibrary(path).styles() == [Style("A", "b", "c")]


def test_styles_reload_when_the_file_changes(tmp_path):
    """Editing styles.csv takes effect without a restart; a missing file means no styles."""
    path = tmp_path / "styles.csv"
    library = StyleLibrary(path)
    assert library.styles() == [] and StyleLibrary(None).styles() == []
    write(path, "name,prompt,negative_prompt\nA,one,\n")
    assert library.styles() == [Style("A", "one", "")]
    write(path, "name,prompt,negative_prompt\nA,two,\nB,three,\n")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    assert [s.prompt for s in library.styles()] == ["two", "three"]


@pytest.mark.parametrize(
    "content",
    [
        b"prompt,negative_prompt\nno name column,\n",
        b"name,prompt\n\xff\xfe\xfa,bad utf-8\n",
        b"name,prompt\nA," + b"x" * 200_000 + b"\n",  # over the csv module's field limit
    ],
)
def test_malformed_styles_file_gives_no_styles_and_a_warning(tmp_path, caplog, content):
    """A broken styles.csv must not break generation: no styles, one logged warning."""
    path = tmp_path / "styles.csv"
    path.write_bytes(content)
    library = StyleLibrary(path)
    with caplog.at_level(logging.WARNING, logger="studio.prompts.styles"):
        assert library.styles() == []
        assert library.apply("a cat", "", ["A"]) == ("a cat", "", ["A"])
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
