from datetime import UTC

from dashboard.data import DashboardSources, TickCache
from dashboard.pages import PageContext
from dashboard.pages.scenarios import NO_SIMULATOR, ControlStatus, ScenariosPage, parse_status, summary
from tests.unit.dashboard.conftest import FakeStore

STATUS = {"active": None, "clock_s": 12.5, "time_scale": 60,
          "scenarios": {"mains_failure": "Mains fails. The generator starts.", "hot_aisle": "Cooling fails."}}


def test_parse_status_reads_the_control_api():
    status = parse_status(200, STATUS)
    assert status.error is None and status.active is None and status.clock_s == 12.5
    assert list(status.scenarios) == ["mains_failure", "hot_aisle"]


def test_parse_status_turns_errors_into_a_message():
    assert parse_status(599, {"error": "no simulator answering"}).error == "no simulator answering"
    assert parse_status(200, {"scenarios": "nope"}).error == "simulator answered 200"


def test_summary_is_the_first_sentence():
    assert summary("Mains fails. The generator starts.") == "Mains fails."


class FakeClient:
    def __init__(self, status):
        self.current = status
        self.calls = []

    def status(self):
        return self.current

    def start(self, name):
        self.calls.append(("start", name))
        return 202, {"started": name}

    def stop(self):
        self.calls.append(("stop",))
        return 200, {"stopped": True}


def page_with(demo_site, clock, url="http://127.0.0.1:1/scenarios"):
    ctx = PageContext(DashboardSources(demo_site, FakeStore(), clock=clock, scenario_url=url), UTC,
                      TickCache(2, clock))
    return ScenariosPage(ctx)


def test_start_only_sends_names_the_simulator_listed(demo_site, clock):
    page = page_with(demo_site, clock)
    page.client = FakeClient(parse_status(200, STATUS))
    assert page.start("mains_failure").children == "scenario mains_failure started"
    assert page.start("../../admin").children == "unknown scenario"
    assert page.stop().children == "scenario stopped"
    assert page.client.calls == [("start", "mains_failure"), ("stop",)]


def test_refresh_shows_the_running_scenario_and_enables_stop(demo_site, clock):
    page = page_with(demo_site, clock)
    page.client = FakeClient(parse_status(200, {**STATUS, "active": "mains_failure"}))
    status, table, stop_disabled = page.refresh(1)
    assert "mains_failure" in str(status) and stop_disabled is False
    assert "Cooling fails." in str(table)


def test_without_a_simulator_the_page_says_so(demo_site, clock):
    page = page_with(demo_site, clock, url=None)
    assert page.status() == ControlStatus(None, None, None, {}, NO_SIMULATOR)
    assert page.refresh(1)[2] is True
    assert page.start("mains_failure").children == NO_SIMULATOR
