"""The government service bus (E-bus): member registry, mTLS routing, protocol conversion, message log, delivery."""
