"""Deterministic sample records of the simulated registries (synthetic people and parcels, no real data)."""

from __future__ import annotations

PERSONS: dict[str, dict[str, str]] = {
    "01010000001": {"nationalId": "01010000001", "givenName": "Rami", "familyName": "Haddad",
                    "birthDate": "1985-03-14", "placeOfBirth": "Damascus", "status": "alive"},
    "01010000002": {"nationalId": "01010000002", "givenName": "Lina", "familyName": "Khoury",
                    "birthDate": "1992-11-02", "placeOfBirth": "Aleppo", "status": "alive"},
    "01010000003": {"nationalId": "01010000003", "givenName": "Omar", "familyName": "Sabbagh",
                    "birthDate": "1970-06-30", "placeOfBirth": "Homs", "status": "deceased"},
}

PARCELS: dict[str, dict[str, str]] = {
    "DMS-1001": {"parcelId": "DMS-1001", "district": "Damascus/Mezzeh", "areaM2": "420", "owner": "01010000001",
                 "encumbered": "false"},
    "ALP-2002": {"parcelId": "ALP-2002", "district": "Aleppo/Aziziyah", "areaM2": "1310", "owner": "01010000002",
                 "encumbered": "true"},
}
