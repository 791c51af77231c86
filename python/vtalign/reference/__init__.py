"""Float64 oracles, one file per op family: plain torch, written from the definitions."""
