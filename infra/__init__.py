"""govcloud: infrastructure-as-code and operations for a government's private cloud and e-government platform."""
