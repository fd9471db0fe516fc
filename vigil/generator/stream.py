"""The synthetic stream: legitimate habits plus labelled fraud typologies, deterministic per seed.

Events live on a grid of slots: slot `i` happens at `start + (i + jitter_i) / event_rate`, so
the stream is in event-time order without sorting and can be cut into chunks anywhere. Fraud
episodes (bursts, sequences) are planned when their first slot comes up; their later events
claim future slots and replace the legitimate transaction that would have been there.
Legitimate draws use their own random stream, so the fraud settings never change them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import numpy as np

from vigil.generator.errors import GeneratorConfigError
from vigil.generator.population import (
    CATEGORY_KIND,
    CATEGORY_SPEND,
    HOUR_PROFILES,
    PER_USD,
    SCALES,
    USUAL_MERCHANTS,
    Population,
    build_population,
)
from vigil.generator.world import CATEGORIES, COUNTRIES, far_countries

CHUNK: Final = 4096  # slots per generated batch; fixed, so output never depends on the sink
TYPOLOGIES: Final = (
    "card_testing",
    "account_takeover",
    "compromised_merchant",
    "high_amount",
    "impossible_travel",
    "mule_fan_in",
)
# Share of fraud *episodes* per typology (card testing episodes are long bursts).
_TYPOLOGY_WEIGHTS: Final = np.array([0.12, 0.22, 0.1, 0.26, 0.18, 0.12])
_MAX_MAJOR_UNITS: Final = 500_000_000.0
_CURRENCIES: Final = tuple(c.currency for c in COUNTRIES)
_COUNTRY_CODES: Final = tuple(c.code for c in COUNTRIES)
_MCCS: Final = tuple(c.mcc for c in CATEGORIES)
_SCALE_ARRAY: Final = np.array(SCALES, dtype=np.int64)
# Episodes last up to about an hour of event time; shorter runs compress them to a quarter of the run.
_EPISODE_SPAN_SECONDS: Final = 4 * 3600.0
_MAX_EPISODES_PER_CHUNK: Final = CHUNK


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    """What to generate. `rate` x `duration` transactions (duration 0 = endless)."""

    rate: float = 100.0
    duration: float = 60.0
    accounts: int = 1000
    merchants: int = 200
    fraud_rate: float = 0.01
    seed: int = 0
    tenants: tuple[str, ...] = ("tenant-1",)
    start: datetime = field(default_factory=lambda: datetime.now(UTC))
    event_rate: float | None = None  # transactions per second of event time (default: rate)

    def __post_init__(self) -> None:
        problems = []
        if not self.rate > 0:
            problems.append("rate must be > 0")
        if self.duration < 0:
            problems.append("duration must be >= 0 (0 = endless)")
        if self.accounts < 1 or self.merchants < 1:
            problems.append("accounts and merchants must be >= 1")
        if not 0 <= self.fraud_rate <= 0.5:
            problems.append("fraud_rate must be between 0 and 0.5")
        if self.seed < 0:
            problems.append("seed must be >= 0")
        if not self.tenants:
            problems.append("at least one tenant is needed")
        if self.start.tzinfo is None:
            problems.append("start must carry a time zone")
        if self.event_rate is not None and not self.event_rate > 0:
            problems.append("event_rate must be > 0")
        if problems:
            raise GeneratorConfigError("; ".join(problems))

    @property
    def total(self) -> int | None:
        """Transactions to generate, or None for an endless stream."""
        return None if self.duration == 0 else max(1, round(self.rate * self.duration))

    @property
    def events_per_second(self) -> float:
        return self.event_rate if self.event_rate is not None else self.rate


class Label(NamedTuple):
    """Ground truth for one fraudulent transaction (never inside the transaction itself)."""

    transaction_id: str
    tenant_id: str
    label: str
    typology: str
    occurred_at: str


@dataclass(frozen=True, slots=True)
class GeneratedBatch:
    """Transactions as contract-shaped dicts (None fields omitted), in event-time order, and their labels."""

    transactions: list[dict[str, Any]]
    labels: list[Label]


class _Event(NamedTuple):
    fields: dict[str, Any]  # everything but transaction_id and occurred_at
    typology: str | None  # None: a legitimate event that belongs to an episode


class SyntheticStream:
    """Iterate `batches()` for the configured stream; two instances with one config yield the same data."""

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        population_seed, legit_seed, fraud_seed = np.random.SeedSequence(config.seed).spawn(3)
        self.population: Population = build_population(
            accounts=config.accounts,
            merchants=config.merchants,
            tenants=config.tenants,
            rng=np.random.default_rng(population_seed),
        )
        self._legit = np.random.default_rng(legit_seed)
        self._fraud = np.random.default_rng(fraud_seed)
        self._far = far_countries()
        self._pending: dict[int, _Event] = {}
        self._quota = 0.0
        self._episodes = 0
        pop = self.population
        self._country_pool_cumulative = tuple(
            np.cumsum(pop.merchant_popularity[pool]) if pool.size else np.zeros(0) for pool in pop.shops
        )
        self._online = np.flatnonzero(np.array([CATEGORY_KIND[c] == "online" for c in pop.merchant_category]))
        self._physical = np.flatnonzero(np.array([CATEGORY_KIND[c] == "physical" for c in pop.merchant_category]))
        self._tables = _merchant_tables(pop)
        total = config.total
        span = math.inf if total is None else total / config.events_per_second
        self._time_scale = min(1.0, span / _EPISODE_SPAN_SECONDS)
        self._start_us = int(config.start.timestamp() * 1_000_000)
        self._id_prefix = f"tx-{config.seed}-"

    def batches(self) -> Iterator[GeneratedBatch]:
        total = self.config.total
        first = 0
        while total is None or first < total:
            size = CHUNK if total is None else min(CHUNK, total - first)
            yield self._chunk(first, size, total)
            first += size

    # --- one chunk ------------------------------------------------------------------------------

    def _chunk(self, first: int, size: int, total: int | None) -> GeneratedBatch:
        config = self.config
        slots = np.arange(first, first + size, dtype=np.int64)
        jitter = self._legit.random(size)
        micros = self._start_us + ((slots + jitter) * (1_000_000 / config.events_per_second)).astype(np.int64)
        stamps = np.datetime_as_string(micros.astype("datetime64[us]").astype("datetime64[ms]"), unit="ms")
        legit = self._legit_fields(micros)

        self._quota += config.fraud_rate * size
        attempts = 0
        while self._quota > 0 and attempts < _MAX_EPISODES_PER_CHUNK:
            self._quota -= self._plan_episode(first, size, total)
            attempts += 1

        transactions: list[dict[str, Any]] = []
        labels: list[Label] = []
        prefix = self._id_prefix
        pending = self._pending
        for offset in range(size):
            slot = first + offset
            transaction_id = f"{prefix}{slot:09d}"
            occurred_at = f"{stamps[offset]}Z"
            event = pending.pop(slot, None)
            fields = legit[offset] if event is None else event.fields
            record = {"transaction_id": transaction_id, "occurred_at": occurred_at, **fields}
            transactions.append(record)
            if event is not None and event.typology is not None:
                labels.append(Label(transaction_id, record["tenant_id"], "fraud", event.typology, occurred_at))
        return GeneratedBatch(transactions, labels)

    def _legit_fields(self, micros: np.ndarray[Any, np.dtype[np.int64]]) -> list[dict[str, Any]]:
        """Legitimate transactions for every slot of the chunk (fraud replaces some afterwards)."""
        pop = self.population
        rng = self._legit
        size = micros.size
        accounts = self._accounts_for(micros)
        usual_pick = rng.integers(0, USUAL_MERCHANTS, size)
        wander = rng.random(size) < 0.15
        merchants = pop.usual[accounts, usual_pick]
        home = pop.home[accounts]
        for country in np.unique(home[wander]):
            chosen = np.flatnonzero(wander & (home == country))
            cumulative = self._country_pool_cumulative[country]
            if cumulative.size:
                draws = np.searchsorted(cumulative, rng.random(chosen.size) * cumulative[-1])
                merchants[chosen] = pop.shops[country][np.minimum(draws, cumulative.size - 1)]
        category = pop.merchant_category[merchants]
        spend = np.exp(rng.normal(pop.mu[accounts], pop.sigma[accounts])) * CATEGORY_SPEND[category]
        scale = _SCALE_ARRAY[home]
        units = np.maximum(np.rint(np.minimum(spend * PER_USD[home], _MAX_MAJOR_UNITS) * 10.0**scale), 1)
        channel_draw = rng.random(size)
        card_draw = rng.random(size)
        entry_draw = rng.random(size) < 0.6
        terminal = rng.integers(1, 4, size)

        # Python lists: indexing numpy scalars one by one is several times slower.
        tables = self._tables
        account_ids, tenants, cards, devices, ips = (
            pop.account_ids,
            pop.account_tenant,
            pop.cards,
            pop.devices,
            pop.ips,
        )
        fields = []
        for a, m, c, h, unit, channel_u, card_u, contactless, term in zip(
            accounts.tolist(),
            merchants.tolist(),
            category.tolist(),
            home.tolist(),
            units.astype(np.int64).tolist(),
            channel_draw.tolist(),
            card_draw.tolist(),
            entry_draw.tolist(),
            terminal.tolist(),
            strict=True,
        ):
            kind = CATEGORY_KIND[c]
            if kind == "physical":
                channel = "card_present" if channel_u < 0.9 else "wallet"
            elif kind == "online":
                channel = "ecommerce" if channel_u < 0.85 else "wallet"
            else:
                channel = "atm" if kind == "atm" else "transfer"
            card = cards[a]
            record: dict[str, Any] = {
                "tenant_id": tenants[a],
                "account_id": account_ids[a],
                "card_id": card[0] if card_u < 0.75 or len(card) == 1 else card[1],
                "merchant_id": tables.merchant_ids[m],
                "merchant_category": _MCCS[c],
                "amount": _render_units(unit, SCALES[h]),
                "currency": _CURRENCIES[h],
                "channel": channel,
                "country": tables.merchant_country[m],
            }
            if channel == "card_present" or channel == "atm":
                record["lat"] = tables.lat[m]
                record["lon"] = tables.lon[m]
                record["attributes"] = {
                    "terminal_id": tables.terminals[m][term],
                    "entry_mode": "contactless" if contactless else "chip",
                }
            else:
                record["device_id"] = devices[a]
                record["ip"] = ips[a]
            fields.append(record)
        return fields

    def _accounts_for(self, micros: np.ndarray[Any, np.dtype[np.int64]]) -> np.ndarray[Any, np.dtype[np.int64]]:
        """Who pays at each slot: busy accounts more often, and mostly in their usual local hours."""
        pop = self.population
        rng = self._legit
        utc_hours = (micros // 3_600_000_000) % 24
        accounts = np.empty(micros.size, dtype=np.int64)
        mass = np.array([cumulative[-1] for cumulative in pop.group_cumulative])
        for hour in np.unique(utc_hours):
            where = np.flatnonzero(utc_hours == hour)
            local = (hour + pop.group_offset) % 24
            weights = mass * HOUR_PROFILES[pop.group_profile, local]
            groups = rng.choice(mass.size, size=where.size, p=weights / weights.sum())
            for group in np.unique(groups):
                chosen = where[groups == group]
                cumulative = pop.group_cumulative[group]
                draws = np.searchsorted(cumulative, rng.random(chosen.size) * cumulative[-1])
                accounts[chosen] = pop.group_members[group][np.minimum(draws, cumulative.size - 1)]
        return accounts

    # --- fraud ------------------------------------------------------------------------------------

    def _plan_episode(self, first: int, size: int, total: int | None) -> int:
        """Plan one fraud episode starting in this chunk; returns how many fraudulent events it adds."""
        rng = self._fraud
        self._episodes += 1
        typology = TYPOLOGIES[int(rng.choice(len(TYPOLOGIES), p=_TYPOLOGY_WEIGHTS / _TYPOLOGY_WEIGHTS.sum()))]
        planner = getattr(self, f"_{typology}")
        events: list[tuple[float, _Event]] = planner()
        per_second = self.config.events_per_second * self._time_scale
        offsets = [int(seconds * per_second) for seconds, _ in events]
        start = first + int(rng.integers(0, size))
        if total is not None:
            # Start early enough for the whole episode to fit when the run allows it.
            start = max(first, min(start, total - 1 - offsets[-1]))
        placed = 0
        for offset, (_, event) in zip(offsets, events, strict=True):
            slot = start + offset
            while slot in self._pending:
                slot += 1
            if total is not None and slot >= total:
                continue
            self._pending[slot] = event
            placed += event.typology is not None
        return placed

    def _victim(self) -> int:
        return int(self._fraud.integers(0, self.population.size))

    def _fraud_device(self) -> str:
        return f"fdev-{self.config.seed}-{self._episodes}"

    def _fraud_ip(self) -> str:
        n = self._episodes
        return f"185.{n % 250 + 1}.{(n // 250) % 250}.{n % 200 + 10}"

    def _base(self, account: int) -> dict[str, Any]:
        pop = self.population
        card = pop.cards[account]
        return {
            "tenant_id": pop.account_tenant[account],
            "account_id": pop.account_ids[account],
            "card_id": card[int(self._fraud.integers(0, len(card)))],
        }

    def _amount(self, account: int, *, multiplier: float, category: int) -> str:
        pop = self.population
        home = int(pop.home[account])
        typical = math.exp(float(pop.mu[account])) * CATEGORY_SPEND[category] * PER_USD[home]
        return _format_amount(min(typical * multiplier, _MAX_MAJOR_UNITS), SCALES[home])

    def _merchant_fields(self, merchant: int) -> dict[str, Any]:
        pop = self.population
        category = int(pop.merchant_category[merchant])
        return {
            "merchant_id": pop.merchant_ids[merchant],
            "merchant_category": _MCCS[category],
            "country": _COUNTRY_CODES[int(pop.merchant_country[merchant])],
        }

    def _pick(self, pool: np.ndarray[Any, np.dtype[np.int64]], fallback: np.ndarray[Any, np.dtype[np.int64]]) -> int:
        choices = pool if pool.size else fallback
        if not choices.size:
            choices = np.arange(len(self.population.merchant_ids))
        return int(choices[int(self._fraud.integers(0, choices.size))])

    def _card_testing(self) -> list[tuple[float, _Event]]:
        """Bursts of tiny online charges on one card, to learn whether it works."""
        rng = self._fraud
        account = self._victim()
        pop = self.population
        home = int(pop.home[account])
        device, ip = self._fraud_device(), self._fraud_ip()
        merchants = [self._pick(self._online, self._physical) for _ in range(int(rng.integers(1, 4)))]
        base = self._base(account)
        events = []
        at = 0.0
        for _ in range(int(rng.integers(5, 21))):
            merchant = merchants[int(rng.integers(0, len(merchants)))]
            tiny = float(rng.uniform(0.5, 2.0)) * PER_USD[home]
            fields = {
                **base,
                **self._merchant_fields(merchant),
                "amount": _format_amount(tiny, SCALES[home]),
                "currency": _CURRENCIES[home],
                "channel": "ecommerce",
                "device_id": device,
                "ip": ip,
            }
            events.append((at, _Event(_ordered(fields), "card_testing")))
            at += float(rng.uniform(2, 40))
        return events

    def _account_takeover(self) -> list[tuple[float, _Event]]:
        """A new device in a far country spends far above the account's habit."""
        rng = self._fraud
        account = self._victim()
        pop = self.population
        home = int(pop.home[account])
        far = self._far[home]
        country = int(far[int(rng.integers(0, far.size))]) if far.size else home
        device, ip = self._fraud_device(), self._fraud_ip()
        base = self._base(account)
        events = []
        at = 0.0
        for _ in range(int(rng.integers(1, 4))):
            merchant = self._pick(pop.online_by_country[country], self._online)
            category = int(pop.merchant_category[merchant])
            fields = {
                **base,
                **self._merchant_fields(merchant),
                "country": _COUNTRY_CODES[country],
                "amount": self._amount(account, multiplier=float(rng.uniform(5, 20)), category=category),
                "currency": _CURRENCIES[home],
                "channel": "ecommerce",
                "device_id": device,
                "ip": ip,
            }
            events.append((at, _Event(_ordered(fields), "account_takeover")))
            at += float(rng.uniform(300, 1800))
        return events

    def _compromised_merchant(self) -> list[tuple[float, _Event]]:
        """A rogue terminal at one merchant charges many different cards within hours."""
        rng = self._fraud
        pop = self.population
        merchant = self._pick(self._physical, self._online)
        country = int(pop.merchant_country[merchant])
        locals_ = np.flatnonzero(pop.home == country)
        terminal = f"term-{merchant:06d}-x{self._episodes}"
        events = []
        at = 0.0
        for _ in range(int(rng.integers(5, 16))):
            pool = locals_ if locals_.size else np.arange(pop.size)
            account = int(pool[int(rng.integers(0, pool.size))])
            home = int(pop.home[account])
            category = int(pop.merchant_category[merchant])
            fields = {
                **self._base(account),
                **self._merchant_fields(merchant),
                "amount": self._amount(account, multiplier=float(rng.uniform(2, 6)), category=category),
                "currency": _CURRENCIES[home],
                "channel": "card_present",
                "lat": round(float(pop.merchant_lat[merchant]), 4),
                "lon": round(float(pop.merchant_lon[merchant]), 4),
                "attributes": {"terminal_id": terminal, "entry_mode": "magstripe"},
            }
            events.append((at, _Event(_ordered(fields), "compromised_merchant")))
            at += float(rng.uniform(120, 1500))
        return events

    def _high_amount(self) -> list[tuple[float, _Event]]:
        """One payment many times the account's usual amount, at a usual merchant."""
        rng = self._fraud
        pop = self.population
        account = self._victim()
        home = int(pop.home[account])
        merchant = int(pop.usual[account, int(rng.integers(0, USUAL_MERCHANTS))])
        category = int(pop.merchant_category[merchant])
        kind = CATEGORY_KIND[category]
        fields: dict[str, Any] = {
            **self._base(account),
            **self._merchant_fields(merchant),
            "amount": self._amount(account, multiplier=float(rng.uniform(20, 60)), category=category),
            "currency": _CURRENCIES[home],
            "channel": {"physical": "card_present", "online": "ecommerce", "atm": "atm"}.get(kind, "transfer"),
        }
        if kind in ("physical", "atm"):
            fields["lat"] = round(float(pop.merchant_lat[merchant]), 4)
            fields["lon"] = round(float(pop.merchant_lon[merchant]), 4)
        else:
            fields["device_id"] = pop.devices[account]
            fields["ip"] = pop.ips[account]
        return [(0.0, _Event(_ordered(fields), "high_amount"))]

    def _impossible_travel(self) -> list[tuple[float, _Event]]:
        """The same card present at home and, minutes later, thousands of kilometres away."""
        rng = self._fraud
        pop = self.population
        account = self._victim()
        home = int(pop.home[account])
        far = self._far[home]
        country = int(far[int(rng.integers(0, far.size))]) if far.size else home
        base = self._base(account)
        events = []
        for at, where, typology, multiplier in (
            (0.0, home, None, float(rng.uniform(0.5, 1.5))),
            (float(rng.uniform(600, 3600)), country, "impossible_travel", float(rng.uniform(1.5, 4))),
        ):
            merchant = self._pick(pop.physical_by_country[where], pop.by_country[where])
            category = int(pop.merchant_category[merchant])
            fields = {
                **base,
                **self._merchant_fields(merchant),
                "country": _COUNTRY_CODES[where],
                "amount": self._amount(account, multiplier=multiplier, category=category),
                "currency": _CURRENCIES[home],
                "channel": "card_present",
                "lat": round(float(pop.merchant_lat[merchant]), 4),
                "lon": round(float(pop.merchant_lon[merchant]), 4),
                "attributes": {"terminal_id": f"term-{merchant:06d}-1", "entry_mode": "chip"},
            }
            events.append((at, _Event(_ordered(fields), typology)))
        return events

    def _mule_fan_in(self) -> list[tuple[float, _Event]]:
        """Many unrelated accounts transfer to one beneficiary within hours."""
        rng = self._fraud
        pop = self.population
        mule = f"mule-{self.config.seed}-{self._episodes}"
        events = []
        at = 0.0
        for _ in range(int(rng.integers(8, 26))):
            account = self._victim()
            home = int(pop.home[account])
            fields = {
                **self._base(account),
                "merchant_id": mule,
                "merchant_category": "4829",
                "amount": _format_amount(float(rng.uniform(200, 900)) * PER_USD[home], SCALES[home]),
                "currency": _CURRENCIES[home],
                "channel": "transfer",
                "country": _COUNTRY_CODES[home],
                "device_id": pop.devices[account],
                "ip": pop.ips[account],
            }
            events.append((at, _Event(_ordered(fields), "mule_fan_in")))
            at += float(rng.uniform(60, 1200))
        return events


_ORDER: Final = {
    name: index
    for index, name in enumerate(
        (
            "tenant_id",
            "account_id",
            "card_id",
            "merchant_id",
            "merchant_category",
            "amount",
            "currency",
            "channel",
            "country",
            "device_id",
            "ip",
            "lat",
            "lon",
            "attributes",
        )
    )
}


def _ordered(fields: dict[str, Any]) -> dict[str, Any]:
    """Contract field order, so fraudulent and legitimate records serialise alike."""
    return dict(sorted(fields.items(), key=lambda item: _ORDER[item[0]]))


def _format_amount(major: float, scale: int) -> str:
    """Round to the currency's minor unit (at least one unit) and render exactly."""
    return _render_units(max(1, round(major * 10**scale)), scale)


def _render_units(units: int, scale: int) -> str:
    if scale == 0:
        return str(units)
    whole, fraction = divmod(units, 10**scale)
    return f"{whole}.{fraction:0{scale}d}"


@dataclass(frozen=True, slots=True)
class _MerchantTables:
    """Per-merchant strings rendered once (the per-transaction loop only indexes lists)."""

    merchant_ids: list[str]
    merchant_country: list[str]
    lat: list[float]
    lon: list[float]
    terminals: list[tuple[str, ...]]  # index 1..3 are the merchant's terminals


def _merchant_tables(pop: Population) -> _MerchantTables:
    count = len(pop.merchant_ids)
    return _MerchantTables(
        merchant_ids=pop.merchant_ids,
        merchant_country=[_COUNTRY_CODES[c] for c in pop.merchant_country.tolist()],
        lat=[round(v, 4) for v in pop.merchant_lat.tolist()],
        lon=[round(v, 4) for v in pop.merchant_lon.tolist()],
        terminals=[("", *(f"term-{m:06d}-{k}" for k in (1, 2, 3))) for m in range(count)],
    )
