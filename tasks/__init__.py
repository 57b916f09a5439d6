"""The service layer: plain functions taking their collaborators (session, engine, settings,
clock) as arguments, testable without Prefect. The CLI, the web and the flows call them; nothing
here imports `web`, `cli` or `flows`.

One package per capability, each importing only the ones listed before it (and the plumbing):

- plumbing: `formats` (numbers and text as people read them), `progress` (progress of long
  work), `outbox` (side effects written with their change, leased to drains, and the retry
  policy), `drain` (the one delivery path: a group of one or a batch per call, outcomes
  recorded with what they mean), `rate_limits` (a remote account's rate limit shared by every
  process on the store);
- `campaigns`: a campaign applied from its files, its roster, plan and tracking links;
- `webhooks`: a campaign's webhook subscriptions, the events every capability emits to them,
  and their signed, ordered delivery;
- `payments`: what creators earn under the campaign's payment terms, in a double-entry ledger;
- `briefs`: each creator's brief generated, versioned, emailed, acknowledged, reminded;
- `review`: a creative's drafts, the policy checks, tiered review, deadlines, posting;
- `leads`: contacts, the leads of a campaign, their sync to each destination, forgetting;
- `engagement`: events from every source, the follow-up rules, consent, delivery;
- `amplification`: the posts worth boosting, creators' Spark Ads authorizations, the boosts
  checked under the paid rules and made on the campaign's TikTok ad account, their paid figures;
- `reporting`: the campaign's numbers, KPIs, attribution, lift and the report;
- `rehearsal`: the simulated creators, approvers and audience of a rehearsal;
- `sprint`: the sprint's start, weeks, milestones and summary;
- `mail`: the one email drain, with the handler each capability gives for its messages;
- `staff`: what the staff console reads of a campaign (pipeline, lead sync, the logs);
- `api`: the REST API's tokens, idempotency and rate limits, over every capability it serves.

Adapters to the outside (`integrations`) sit below this layer; the connector for a lead
destination comes from `integrations.destinations`.

`tests/unit/test_layout.py` holds this order.
"""
