from datetime import UTC, datetime

from dashboard.figures import empty_figure, max_gap, segments, trend_figure
from storage.base import Bucket

T0 = 1_700_000_000.0


def good(start, mean, low=None, high=None):
    return Bucket(start, mean if low is None else low, mean if high is None else high, mean, 1, 0)


def all_missing(start):
    return Bucket(start, None, None, None, 0, 1)


def at(ts):
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


def figure(buckets, **kwargs):
    options = {"start": T0 - 60, "end": T0 + 60, "bucket_s": 1.0, "poll_interval_s": 2.0, "unit": "°C",
               "uirevision": "dev|pt|3600", "tz": UTC}
    return trend_figure(buckets, **{**options, **kwargs})


def traces(fig, name, mode):
    return [t for t in fig.data if t.name == name and t.mode == mode]


def test_max_gap_allows_bucket_jitter_and_one_lost_poll():
    assert max_gap(bucket_s=1.5, poll_interval_s=2.0) == 5.5


def test_consecutive_buckets_form_one_segment():
    runs = segments([good(T0 + i * 2, 20 + i) for i in range(4)], max_gap_s=5)
    assert [run.x for run in runs] == [(T0, T0 + 2, T0 + 4, T0 + 6)]
    assert runs[0].mean == (20, 21, 22, 23)


def test_all_missing_bucket_breaks_the_line():
    runs = segments([good(T0, 1), good(T0 + 2, 2), all_missing(T0 + 4), good(T0 + 6, 4)], max_gap_s=10)
    assert [run.x for run in runs] == [(T0, T0 + 2), (T0 + 6,)]


def test_time_gap_without_buckets_breaks_the_line():
    runs = segments([good(T0, 1), good(T0 + 2, 2), good(T0 + 30, 3), good(T0 + 32, 4)], max_gap_s=5.5)
    assert [run.x for run in runs] == [(T0, T0 + 2), (T0 + 30, T0 + 32)]


def test_buckets_are_sorted_before_splitting():
    runs = segments([good(T0 + 2, 2), good(T0, 1)], max_gap_s=5)
    assert runs[0].x == (T0, T0 + 2)


def test_partly_missing_bucket_still_draws_its_good_mean():
    partly = Bucket(T0 + 2, 1.0, 3.0, 2.0, 2, 1)
    assert segments([good(T0, 1), partly], max_gap_s=5)[0].mean == (1, 2.0)


def test_figure_draws_gaps_as_breaks_not_joined_lines():
    fig = figure([good(T0, 20), good(T0 + 2, 21), all_missing(T0 + 4), good(T0 + 6, 22), good(T0 + 8, 23)])
    (mean,) = traces(fig, "mean", "lines")
    assert list(mean.y) == [20, 21, None, 22, 23, None]
    assert list(mean.x)[2] is None
    assert mean.connectgaps is False


def test_band_is_one_closed_polygon_per_segment():
    fig = figure([good(T0, 20, 19, 21), good(T0 + 2, 22, 21, 24), all_missing(T0 + 4),
                  good(T0 + 6, 5, 4, 6), good(T0 + 8, 6, 5, 7)])
    (band,) = [t for t in fig.data if t.fill == "toself"]
    assert list(band.y) == [21, 24, 21, 19, None, 6, 7, 5, 4, None]
    assert list(band.x)[:4] == [at(T0), at(T0 + 2), at(T0 + 2), at(T0)]
    assert band.hoverinfo == "skip"


def test_lone_bucket_between_gaps_is_drawn_as_a_marker():
    fig = figure([good(T0, 20), all_missing(T0 + 2), good(T0 + 4, 21), all_missing(T0 + 6)])
    (lone,) = traces(fig, "mean", "markers")
    assert list(lone.y) == [20, 21]
    assert traces(fig, "mean", "lines") == []


def test_uirevision_keeps_zoom_and_unit_labels_the_axis():
    fig = figure([good(T0, 20), good(T0 + 2, 21)])
    assert fig.layout.uirevision == "dev|pt|3600"
    assert fig.layout.yaxis.title.text == "°C"
    # An explicit range would be "changed by the figure" every tick and undo the operator's zoom.
    assert fig.layout.xaxis.range is None


def test_empty_range_shows_the_window_and_says_so():
    fig = figure([all_missing(T0)])
    assert fig.layout.annotations[0].text == "no data in this range"
    assert tuple(fig.layout.xaxis.range) == (at(T0 - 60), at(T0 + 60))


def test_empty_range_can_say_why():
    assert figure([], message="store unavailable").layout.annotations[0].text == "store unavailable"


def test_empty_figure_has_a_message_and_no_data():
    fig = empty_figure("choose a device and a point")
    assert fig.data == ()
    assert fig.layout.annotations[0].text == "choose a device and a point"


# --- compare_figure (the Trends page) -------------------------------------------------------------

from collectors.model import Severity  # noqa: E402
from dashboard.figures import TrendSeries, axis_units, compare_figure  # noqa: E402
from dashboard.trend_data import AlertMark, EnvelopeLine, ScenarioPeriod  # noqa: E402


def series(name="dev temp", unit="°C", envelope=(), buckets=None):
    buckets = buckets if buckets is not None else [good(T0 + i * 2, 20 + i) for i in range(5)]
    return TrendSeries(name, buckets, unit, 2.0, envelope)


def compare(items, **kwargs):
    options = {"start": T0 - 60, "end": T0 + 60, "bucket_s": 1.0, "uirevision": "rev", "tz": UTC}
    return compare_figure(items, **{**options, **kwargs})


def test_each_series_has_a_tagged_mean_line_without_a_trailing_break():
    fig = compare([series("a t"), series("b t")])
    means = [t for t in fig.data if t.meta]
    assert [t.meta for t in means] == ["mean:0", "mean:1"]
    assert list(means[0].y) == [20, 21, 22, 23, 24]  # live readings appended later continue this line
    assert means[0].line.color != means[1].line.color
    assert fig.layout.showlegend is True


def test_a_second_unit_gets_the_right_axis():
    fig = compare([series("a t"), series("b load", unit="%")])
    assert axis_units([series(), series(unit="%"), series(unit="V")]) == ["°C", "%, V"]
    assert fig.layout.yaxis.title.text == "°C"
    assert fig.layout.yaxis2.title.text == "%"
    assert {t.yaxis for t in fig.data if t.meta} == {"y", "y2"}


def test_envelope_levels_are_lines_and_the_warning_band_is_shaded():
    envelope = [EnvelopeLine("r", Severity.WARNING, "above", 23), EnvelopeLine("r", Severity.WARNING, "below", 19),
                EnvelopeLine("r", Severity.CRITICAL, "above", 32)]
    fig = compare([series(envelope=envelope)])
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert sorted(s.y0 for s in lines) == [19, 23, 32]
    (band,) = [s for s in fig.layout.shapes if s.type == "rect"]
    assert (band.y0, band.y1) == (19, 23)


def test_alerts_and_drills_are_marked_with_slug_names_only():
    marks = [AlertMark(T0, "inlet_temperature_out_of_envelope", "dh1-a01", "firing", Severity.WARNING)]
    periods = [ScenarioPeriod("<img src=x>", T0 - 30, None)]
    fig = compare([series()], marks=marks, periods=periods)
    texts = [a.text for a in fig.layout.annotations]
    assert "drill: scenario" in texts and "▲" in texts
    assert all("<" not in (a.text or "") + (a.hovertext or "") for a in fig.layout.annotations)
    assert any(s.type == "rect" and s.yref == "paper" for s in fig.layout.shapes)


def test_no_data_at_all_says_so():
    fig = compare([series(buckets=[])], message="store unavailable")
    assert fig.layout.annotations[-1].text == "store unavailable"
    assert [t.meta for t in fig.data] == ["mean:0"]  # an empty line, ready for live readings
