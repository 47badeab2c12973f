import pytest

from dashboard.playlist import rotate_seconds, step

PAGES = [("/wall", "Wall"), ("/power", "Power"), ("/rooms", "Rooms"), ("/fire", "Fire")]
Q = {"rotate": "30"}


def run(state, now, path, critical=(), resume=False, query=Q):
    return step(state, now=now, path=path, query=query, pages=PAGES, critical=list(critical), resume=resume)


@pytest.mark.parametrize(("raw", "seconds"), [("30", 30), ("1", 5), ("999999", 3600), ("x", None), ("-5", None),
                                              (None, None), (" 10", 10)])
def test_rotation_period_from_the_url(raw, seconds):
    assert rotate_seconds({} if raw is None else {"rotate": raw}) == seconds


def test_no_rotation_without_the_parameter_or_off_the_wall_pages():
    assert run(None, 0, "/wall", query={}).text == ""
    assert run(None, 0, "/alerts").navigate is None and run(None, 0, "/alerts").text == ""


def test_rotates_through_the_wall_pages_in_order_and_wraps():
    first = run(None, 0, "/wall")
    assert first.navigate is None and first.text == "PLAYLIST every 30 s · next: Power in 30 s"
    assert run(first.state, 29, "/wall").navigate is None
    second = run(first.state, 30, "/wall")
    assert second.navigate == "/power"
    state = second.state
    for now, expected in ((60, "/rooms"), (90, "/fire"), (120, "/wall")):
        result = run(state, now, state["path"])
        assert result.navigate == expected
        state = result.state


def test_a_page_chosen_by_hand_restarts_the_period():
    state = run(None, 0, "/wall").state
    assert run(state, 31, "/rooms").navigate is None  # someone navigated: the rooms get their 30 s


def test_existing_critical_alerts_do_not_pause_only_new_ones_do():
    state = run(None, 0, "/power", critical=[("old", "old alert")]).state
    result = run(state, 5, "/power", critical=[("old", "old alert"), ("new", "GAS RELEASED")])
    assert result.paused and result.navigate == "/wall"
    assert "new critical alert: GAS RELEASED" in result.text
    held = run(result.state, 500, "/wall", critical=[("old", "old alert"), ("new", "GAS RELEASED")])
    assert held.paused and held.navigate is None


def test_resumes_when_the_alert_is_acknowledged_or_resolved():
    paused = run(run(None, 0, "/wall").state, 1, "/wall", critical=[("new", "x")]).state
    resumed = run(paused, 100, "/wall", critical=[])  # acknowledged: no longer in the unacknowledged list
    assert not resumed.paused and resumed.navigate is None
    assert run(resumed.state, 130, "/wall").navigate == "/power"  # a full period after resuming


def test_resumes_on_a_click_and_does_not_pause_again_for_the_same_alert():
    paused = run(run(None, 0, "/wall").state, 1, "/wall", critical=[("new", "x")]).state
    resumed = run(paused, 10, "/wall", critical=[("new", "x")], resume=True)
    assert not resumed.paused
    assert not run(resumed.state, 20, "/wall", critical=[("new", "x")]).paused
