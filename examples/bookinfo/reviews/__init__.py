"""The reviews service, in three versions: v1 without stars, v2 black stars, v3 red stars
(v2 and v3 call ratings)."""
