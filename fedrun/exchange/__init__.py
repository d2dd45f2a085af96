"""How a round's segments travel: the only users of fedrun.comm's collectives in the loop.

`packed.Exchange` maps a strategy's wire plan (fedrun.wire) onto one buffer per downlink dtype
and per uplink (operation, dtype) group; each uplink operation is a group class registered in
fedrun.registry.EXCHANGES ("sum" -> `sum.SumGroup`; a gather or a secure sum slot in the same
way). Strategies and stages never import this package."""
