"""A short markdown page for a market run's results (the JSON beside it has everything)."""

from __future__ import annotations

from typing import Any


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"# Market simulator, {results['mode']} mode",
        "",
        f"- date {results['date']}, commit `{results['commit']}`",
        f"- machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['platform']}",
        f"- seed {results['seed']}; market: {results['market']}",
    ]
    if results["mode"] == "day":
        lines += _day(results)
    else:
        lines += _live(results)
    return "\n".join(lines) + "\n"


def _day(results: dict[str, Any]) -> list[str]:
    r = results["result"]
    lines = [
        f"- simulated day {results['simulated_day']}: {r['requests']} requests from {results['users']} "
        f"Instacart users, budgets x{results['budget_scale']}, {results['recommender_calls']} real "
        f"recommender calls, {results['wall_s']:.0f} s of wall time",
        "",
        f"Bids {r['bids']}, won {r['won']} (win rate {_f(r['win_rate'])}), billed {r['billed']}; "
        f"spend {_f(r['spend'], 2)} of {_f(r['daily_budget'], 2)} ({_f(r['spend_over_budget'])}); "
        f"mean clearing/bid {_f(r['mean_clearing_over_bid'])}, min-to-win/clearing "
        f"{_f(r['mean_min_to_win_over_clearing'])}, shading factor {_f(r['mean_shading_factor'])} "
        "(first price: what the bid shader kept of the unshaded price).",
        "",
        f"No-bids: {r['no_bids']}",
        "",
        "| campaign | pacing | budget | spend | budget exhausted at | first budget no-bid |",
        "|---|---|---|---|---|---|",
    ]
    for cid, c in r["campaigns"].items():
        lines.append(
            f"| {cid} | {c['pacing']} | {_f(c['daily_budget'], 2)} | {_f(c['spend'], 2)} | "
            f"{c['budget_exhausted_at'] or 'none'} | {c['first_budget_no_bid_at'] or 'none'} |"
        )
    ids = list(r["campaigns"])
    lines += [
        "",
        "Cumulative spend / the pacing target curve's share of the budget, per campaign, at the end of the hour:",
        "",
        "| hour | " + " | ".join(ids) + " |",
        "|---|" + "---|" * len(ids),
    ]
    for h in r["hours"]:
        if h["hour"] % 3 == 2:
            cells = [h["by_campaign"][cid] for cid in ids]
            lines.append(
                f"| {h['hour']:02d} | "
                + " | ".join(
                    f"{_f(c['cumulative_spend'], 2)} / {_f(c['cumulative_target'], 2)}" for c in cells
                )
                + " |"
            )
    lines += [
        "",
        "| hour | requests | bids | won | win rate | spend | cum. spend | cum. target | spend/target "
        "| clearing/bid | min-to-win/clearing | shading factor | no-bids |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for h in r["hours"]:
        lines.append(
            f"| {h['hour']:02d} | {h['requests']} | {h['bids']} | {h['won']} | {_f(h['win_rate'])} | "
            f"{_f(h['spend'], 2)} | {_f(h['cumulative_spend'], 2)} | {_f(h['cumulative_target'], 2)} | "
            f"{_f(h['spend_over_target'])} | {_f(h['mean_clearing_over_bid'])} | "
            f"{_f(h['mean_min_to_win_over_clearing'])} | {_f(h['mean_shading_factor'])} | {h['no_bids'] or '-'} |"
        )
    return lines


def _live(results: dict[str, Any]) -> list[str]:
    lat, auctions = results["latency"], results["auctions"]
    return [
        f"- {lat['requests']} requests offered at {lat['offered_rate_per_s']}/s (open loop), tmax {lat['tmax_ms']} ms",
        "",
        f"Answered {_f(lat['answered_per_s'], 1)}/s; within tmax {_f(lat['within_tmax_share'], 4)}; "
        f"p50 {_f(lat['p50_ms'], 1)} ms, p99 {_f(lat['p99_ms'], 1)} ms; statuses {lat['status']}, errors {lat['errors']}.",
        "",
        f"Bids {auctions['bids']}, won {auctions['won']} (win rate {_f(auctions['win_rate'])}), billed "
        f"{auctions['billed']}, spend {_f(auctions['spend'], 4)}; mean bid {_f(auctions['mean_bid_cpm'])} CPM "
        f"(won: {_f(auctions['mean_won_bid_cpm'])}), "
        f"mean clearing {_f(auctions['mean_clearing_cpm'])} CPM, clearing/bid {_f(auctions['mean_clearing_over_bid'])}.",
        "",
        f"Losses by code: {auctions['losses_by_code']}; notices: {auctions['notices_by_status']}",
        "",
        f"No-bid reasons (read back from ad-bids): {results.get('no_bids', {})}",
    ]
