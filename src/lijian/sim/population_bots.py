"""The 10:00 rush with bots: people and bot owners, the requests each sends and when.

People tap when they see the release: a reaction time of at least ``PEOPLE_REACTION_MS``,
then an exponential spread (most within the first minutes), one order each of an
everyday size. A bot owner runs ``ACCOUNTS_PER_OWNER`` accounts (bought or borrowed real
names) on a couple of devices and one bank card; every account fires
``BOT_REQUESTS_PER_ACCOUNT`` orders within the first ``BOT_BURST_MS`` after the open,
each large enough to take the whole savings cap (retries with fresh orders, so one
decline does not stop it). The same seed gives the same population, request for request.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

PEOPLE_REACTION_MS = 300  # a person at 10:00:00.300 at the earliest
PEOPLE_SPREAD_S = 90.0  # mean of the exponential spread after that
PEOPLE_MEDIAN_PAYABLE_FEN = 40_000  # 400 CNY: a 15% discount of 60 CNY
PEOPLE_PAYABLE_SIGMA = 0.6
PEOPLE_SECOND_ORDER_SHARE = 0.2  # some people send a second order a little later
ACCOUNTS_PER_OWNER = 20
DEVICES_PER_OWNER = 2
BOT_REQUESTS_PER_ACCOUNT = 3
BOT_BURST_MS = 100
BOT_PAYABLE_FEN = 1_000_000  # 10,000 CNY: 15% is 1,500 CNY, the whole cap
MAX_ACCOUNTS = 1_000_000


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str  # the person id the channel sends
    owner: str  # who gets the money: the person itself, or the bot owner
    is_bot: bool
    device_id: str
    card_hash: str
    phone_hash: str


@dataclass(frozen=True, slots=True)
class Request:
    offset_ms: int  # after daily_open
    account: int  # index into RushPopulation.accounts
    payable_fen: int
    n: int  # the account's request number (for order ids)


@dataclass(frozen=True, slots=True)
class RushPopulation:
    accounts: list[Account]
    requests: list[Request]  # sorted by (offset, account, n): the arrival order

    @property
    def owners(self) -> list[str]:
        return sorted({a.owner for a in self.accounts if a.is_bot})


def bot_accounts_for(people: int, bot_share: float) -> int:
    """Bot accounts so that they are ``bot_share`` of all accounts (whole owners)."""
    assert 0 <= bot_share < 1
    want = people * bot_share / (1 - bot_share)
    return ACCOUNTS_PER_OWNER * round(want / ACCOUNTS_PER_OWNER)


def build_rush(people: int, bot_share: float, seed: int) -> RushPopulation:
    assert people > 0 and people + bot_accounts_for(people, bot_share) <= MAX_ACCOUNTS
    rng = random.Random(f"{seed}:rush")
    accounts: list[Account] = []
    requests: list[Request] = []
    for i in range(people):
        pid = f"person-{i:06d}"
        accounts.append(Account(pid, pid, False, f"dev-{pid}", f"card-{pid}", f"phone-{pid}"))
        orders = 2 if rng.random() < PEOPLE_SECOND_ORDER_SHARE else 1
        t_ms = PEOPLE_REACTION_MS + int(rng.expovariate(1 / PEOPLE_SPREAD_S) * 1000)
        for n in range(orders):
            payable = int(PEOPLE_MEDIAN_PAYABLE_FEN * math.exp(rng.gauss(0, PEOPLE_PAYABLE_SIGMA)))
            requests.append(Request(t_ms, len(accounts) - 1, max(payable, 100), n))
            t_ms += int(rng.expovariate(1 / 30.0) * 1000) + 1
    bots = bot_accounts_for(people, bot_share)
    for j in range(bots):
        owner = f"owner-{j // ACCOUNTS_PER_OWNER:04d}"
        device = f"dev-{owner}-{j % DEVICES_PER_OWNER}"
        # Every account has its own phone (SIM farms are cheap); devices and the card
        # are shared, which is what identity linking can see.
        accounts.append(
            Account(f"bot-{j:06d}", owner, True, device, f"card-{owner}", f"phone-bot-{j:06d}")
        )
        for n in range(BOT_REQUESTS_PER_ACCOUNT):
            requests.append(
                Request(rng.randrange(BOT_BURST_MS), len(accounts) - 1, BOT_PAYABLE_FEN, n)
            )
    requests.sort(key=lambda r: (r.offset_ms, r.account, r.n))
    return RushPopulation(accounts, requests)
