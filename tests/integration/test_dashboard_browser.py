"""The dashboard in a real browser (Debian's headless Chromium, driven by Playwright) against the
real stack: a known event set is produced while the page is open, and the page must show, live
and without a reload, the counts the result topics hold, the spiking brand's alert and a
segment entry, with no console error and no customer text. The one bid is then billed (its
signed billing notice written to ad-events, as the gateway would) and the page must show the
spend the worker booked on ad-outcomes. The screenshot goes to
build/artifacts/dashboard.png. Every wait is on a page condition or a committed offset."""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
from playwright.sync_api import ConsoleMessage, expect, sync_playwright

from producers.events import EventFactory, Produced, bad_records
from producers.kafka import produce
from stack.local import REPO, STATE_DIR, DashboardProcess
from stack.observe import TopicReader, wait_caught_up
from streams.pacing import cost_micros
from streams.schemas.adevents import NoticeKind
from tests.integration.conftest import Scorer
from tests.integration.test_decisions_e2e import STAPLES, brand_spike, click

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
# Flags that work as root in a closed network: without the background-networking ones,
# Chromium's own connections out are refused and logged. Playwright adds --headless and a
# fresh temporary profile itself.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = REPO / "build" / "artifacts" / "dashboard.png"
CATCH_UP_S = 120.0
SHOWN_MS = 30_000  # the page gets a snapshot twice a second; this bounds a slow CI machine
PII = ("jane.doe@example.com", "7700 900123")
CHATS = (
    "Where is my order? It should have arrived yesterday.",
    "How do I change the delivery address on my account?",
    "I want to talk to a real person, not a bot.",
    "The app charged me twice for the same basket, I want my money back!",
)


def cart_abandoner() -> list[Produced]:
    """test_decisions_e2e's abandoned cart: u-cart enters cart_abandoner (from high_intent)."""
    t0 = datetime.now(UTC) - timedelta(hours=2)
    extra = {"product_id": 196, "category": "snacks", "price": 3.5}
    return [
        click("u-cart", "product_view", t0, **extra),
        click("u-cart", "add_to_cart", t0 + timedelta(minutes=1), **extra),
        click("u-cart", "page_view", t0 + timedelta(minutes=50)),
    ]


def loyal_history() -> list[Produced]:
    """test_decisions_e2e's known buyer, whose bid request then gets a bid."""
    t0 = datetime.now(UTC) - timedelta(days=3)
    return [
        click(
            "u-loyal",
            kind,
            t0 + timedelta(days=day, minutes=i),
            product_id=pid,
            category="produce",
            price=2.0,
        )
        for day in range(3)
        for i, pid in enumerate(STAPLES)
        for kind in ("product_view", "add_to_cart", "purchase")
    ]


def produce_and_wait(scorer: Scorer, records: list[Produced]) -> None:
    assert produce(scorer.settings, records).failed == 0
    wait_caught_up(scorer.settings, scorer.settings.topics.consumed, timeout=CATCH_UP_S, alive=scorer.alive)


def topic_truth(scorer: Scorer) -> tuple[dict[str, Counter[str]], list[str]]:
    """What the result topics hold, counted here (one per output id), apart from the dashboard;
    and the billing notice URLs of the bids."""
    topics = scorer.settings.topics
    read = [topics.cs_replies, topics.ad_bids, topics.ad_outcomes, *topics.dead_letters]
    with TopicReader(scorer.settings, read) as reader:
        reader.read_to_end()
    truth: dict[str, Counter[str]] = {
        "cs": Counter(),
        "nbr": Counter(),
        "dlq": Counter(),
        "bid_value": Counter(),
        "spent": Counter(),
    }
    burls = []
    seen = set()
    for record in reader.records:
        if record.topic.endswith(".dlq"):
            truth["dlq"][record.headers["x-dlq-reason"].decode()] += 1
            continue
        body = orjson.loads(record.value or b"{}")
        key = body.get("reply_id") or body.get("outcome_id") or body["ext"]["response_id"]
        if key in seen:
            continue
        seen.add(key)
        if record.topic == topics.cs_replies:
            truth["cs"][body["action"]] += 1
        elif record.topic == topics.ad_outcomes:
            if body["kind"] == "billed":
                truth["spent"][body["campaign"]] += body["charged_micros"]
        elif body.get("nbr") is not None:
            truth["nbr"][str(body["nbr"])] += 1
        else:
            truth["nbr"]["bid"] += 1
            for seat in body["seatbid"]:
                for bid in seat["bid"]:
                    truth["bid_value"][bid["cid"]] += round(bid["price"] * 1_000_000 / 1000)  # micros
                    burls.append(bid["burl"])
    return truth, burls


def billing_notice(scorer: Scorer, burl: str, clearing_cpm: float) -> Produced:
    """The ad-events record the gateway writes for an exchange's call of `burl` at `clearing_cpm`."""
    query = dict(parse_qsl(urlsplit(burl).query))
    ticket = scorer.settings.notice_signer().verify(NoticeKind.BILLING, query)
    event = ticket.event(NoticeKind.BILLING, datetime.now(UTC), price=clearing_cpm)
    return Produced("ad-events", event.key.encode(), event.model_dump_json().encode())


def test_the_dashboard_shows_the_results_live_in_a_browser(scorer: Scorer) -> None:
    assert CHROMIUM.exists(), "Debian's chromium is missing: `make chromium` (apt-get install -y chromium)"
    settings = scorer.settings
    token = secrets.token_urlsafe(24)
    log = STATE_DIR / "test-workers" / f"{settings.topic_prefix}dashboard.log"
    dashboard = DashboardProcess(settings, log, port=0, token=token)
    dashboard.start()
    base = f"http://127.0.0.1:{dashboard.port}"
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/snapshot", timeout=10)
        assert refused.value.code == 401  # bound to loopback with a token: the token is required

        expect.set_options(timeout=SHOWN_MS)  # every assertion below waits up to this long
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1440, "height": 1100})
            problems: list[str] = []

            def on_console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    problems.append(f"console: {message.text}")

            page.on("console", on_console)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.goto(dashboard.url)  # ?token=..., redirected to / with a session cookie
            assert page.url == f"{base}/"
            expect(page.locator("#status")).to_have_text("live")
            expect(page.locator("#cs-replies")).to_have_text("0")

            # The event set, produced while the page is open: it must update without a reload.
            factory = EventFactory(seed=41)
            chats = [factory.chat(text=t, user_id=f"u-chat-{i}") for i, t in enumerate(CHATS)]
            expired = [factory.bid_request(user_id=f"u-late-{i}", tmax=1) for i in range(2)]  # nbr 15
            strangers = [factory.bid_request(user_id=f"u-new-{i}", tmax=5000) for i in range(2)]  # nbr 8
            bad = [
                *bad_records("chat", max_text_chars=settings.max_text_chars),
                Produced(
                    "chat", b"c-x", f'{{"schema_version": 1, "text": "call +44 {PII[1]} {PII[0]}"}}'.encode()
                ),
            ]
            produce_and_wait(
                scorer,
                [
                    *loyal_history(),
                    *cart_abandoner(),
                    *brand_spike(settings.brand_window_s),
                    *chats,
                    *expired,
                    *strangers,
                    *bad,
                ],
            )
            produce_and_wait(scorer, [factory.bid_request(user_id="u-loyal", tmax=5000, floor=0.01)])
            truth, burls = topic_truth(scorer)
            assert sum(truth["cs"].values()) == len(CHATS)
            assert (truth["nbr"]["15"], truth["nbr"]["8"], truth["nbr"]["bid"]) == (2, 2, 1), truth["nbr"]
            assert sum(truth["dlq"].values()) == len(bad)

            # customer service
            expect(page.locator("#cs-replies")).to_have_text(str(truth["cs"]["reply"]))
            expect(page.locator("#cs-handoffs")).to_have_text(str(truth["cs"]["handoff"]))
            # campaigns: bids, no-bid reasons, spend
            expect(page.locator("#bids")).to_have_text("1")
            expect(page.locator("#no-bids")).to_have_text(str(sum(truth["nbr"].values()) - 1))
            expect(page.locator('#nbr-reasons tr[data-nbr="15"] td.count')).to_have_text("2")
            expect(page.locator('#nbr-reasons tr[data-nbr="8"] td.count')).to_have_text("2")
            # campaigns: the bid's value at its bid price; nothing billed yet, and the page says so
            [(campaign, bid_micros)] = truth["bid_value"].items()
            spend_row = page.locator(f'#campaigns tr[data-campaign="{campaign}"]')
            expect(spend_row.locator("td.bid-value")).to_have_text(f"{bid_micros / 1_000_000:.6f}")
            expect(spend_row.locator("td.spent")).to_have_text("0.000000")
            expect(page.locator("#billing-note")).to_be_visible()
            # dead letters by reason
            expect(page.locator("#dlq-total")).to_have_text(str(len(bad)))
            for reason, n in truth["dlq"].items():
                expect(page.locator(f'#dlq-reasons tr[data-reason="{reason}"] td.count')).to_have_text(str(n))
            # the spiking brand's alert
            alert = page.locator('#alerts li[data-brand="spikebrand"]')
            expect(alert).to_have_count(1)
            expect(alert).to_contain_text("spikebrand alert")
            expect(page.locator("#alert-count")).to_have_text("1")
            # the segment entry (the recent-changes list is a ticker of the last 15: u-loyal's
            # updates can push it out, so the entry is checked in the segment table)
            row = page.locator('#segments tr[data-segment="cart_abandoner"]')
            expect(row.locator("td.population")).to_have_text("1")
            expect(row.locator("td.entered")).to_have_text("1")
            # pipeline health: every chat's latency joined, the worker's lag drained
            samples = page.locator('#latency tr[data-output="cs-replies"] td.samples')
            expect(samples).to_have_text(str(len(CHATS)))
            expect(page.locator("#lag-total")).to_have_text("0")

            # the exchange bills the bid at half its price: the booked spend is the clearing cost
            [burl] = burls
            clearing = round(bid_micros / 1_000 / 2, 4)  # CPM
            produce_and_wait(scorer, [billing_notice(scorer, burl, clearing)])
            booked, _ = topic_truth(scorer)
            assert booked["spent"] == {campaign: cost_micros(clearing)}, booked["spent"]
            expect(spend_row.locator("td.spent")).to_have_text(f"{cost_micros(clearing) / 1_000_000:.6f}")
            outcomes = page.locator(f'#outcomes tr[data-campaign="{campaign}"]')
            expect(outcomes.locator("td.bids")).to_have_text("1")
            expect(outcomes.locator("td.billed")).to_have_text("1")
            expect(outcomes.locator("td.lost")).to_have_text("0")
            expect(page.locator("#billing-note")).to_be_hidden()

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            shown = page.locator("body").inner_text()
            for text in (*PII, *CHATS, "u-cart", "u-loyal"):
                assert text not in shown, f"the page shows {text!r}"
            assert problems == []
            browser.close()
    except BaseException:
        print(f"--- dashboard log ({dashboard.log_path}) ---\n{dashboard.log()}")
        raise
    finally:
        dashboard.stop()
