"""Unit conversion of the real files' variables into fluxscale's units.

Parsing is pint's, through cf_xarray's UDUNITS-compatible registry (``"kg m-2 s-1"``,
``"PgC/m2/yr"`` and ``"kg m**-2 s**-1"`` all parse). What pint cannot know is the
*species* of a carbon flux: a gram of carbon is not a gram of CO2. fluxscale's fluxes
are grams of carbon, so a mass of CO2 is scaled by M(C)/M(CO2) and an amount in mol by
M(C). The species is read from the units string (``gC``, ``PgC``, ``g C``, ``kgCO2``,
``g(CO2)``) or, where the string has none (GFAS writes ``kg m**-2 s**-1`` for its CO2
flux), given by the caller from the variable's definition; a carbon flux whose species
is unknown is refused rather than guessed.
"""

from __future__ import annotations

import functools
import re

import numpy as np

from fluxscale.errors import FluxscaleError

__all__ = ["UnitError", "linear_conversion", "flux_factor", "split_species", "M_C", "M_CO2"]

M_C = 12.011
"""Molar mass of carbon, g mol-1."""
M_CO2 = 44.0095
"""Molar mass of CO2, g mol-1."""

# a mass unit (optionally SI-prefixed gram) followed by a species tag: "PgC", "g C", "kgCO2", "g(CO2)"
_SPECIES = re.compile(r"(?<![A-Za-z])((?:[PTGMk]|)g|t|mol|[mkµu]mol)\s*\(?(CO2|C)\)?(?![A-Za-z0-9])")


class UnitError(FluxscaleError, ValueError):
    """A units string that cannot be parsed or converted to the wanted units."""


@functools.cache
def _registry():
    # cf_xarray's registry reads UDUNITS spellings (m-2, m2, s-1) that plain pint rejects
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Import\\(s\\) unavailable to set up matplotlib")
        from cf_xarray.units import units

    return units


def split_species(units: str) -> tuple[str, str | None]:
    """``("Pg m-2 yr-1", "C")`` from ``"PgC m-2 yr-1"``; species None when untagged."""
    found = set()

    def repl(m: re.Match) -> str:
        found.add(m.group(2))
        return m.group(1)

    plain = _SPECIES.sub(repl, units)
    if len(found) > 1:
        raise UnitError(f"units {units!r} mix carbon and CO2")
    return plain, (found.pop() if found else None)


def _parse(units: str):
    ureg = _registry()
    try:
        return ureg.Quantity(1.0, ureg.parse_units(units.strip() or "1"))
    except Exception as e:  # noqa: BLE001 - pint raises several kinds
        raise UnitError(f"unknown units {units!r} ({type(e).__name__}: {e})") from None


def linear_conversion(units: str, target: str) -> tuple[float, float]:
    """``(scale, offset)`` with ``value_in_target = scale * value + offset``.

    Works for offset units too (``K`` → ``degC``). Raises :class:`UnitError` for
    unknown units or incompatible dimensions.
    """
    if units.strip() == target.strip():
        return 1.0, 0.0
    ureg = _registry()
    _parse(units)
    _parse(target)
    try:
        src_u, dst_u = ureg.parse_units(units.strip() or "1"), ureg.parse_units(target.strip() or "1")
        zero = ureg.Quantity(np.array([0.0, 1.0]), src_u).to(dst_u).magnitude
    except Exception as e:  # noqa: BLE001
        raise UnitError(f"cannot convert {units!r} to {target!r} ({type(e).__name__}: {e})") from None
    return float(zero[1] - zero[0]), float(zero[0])


def flux_factor(units: str, species: str | None = None, target: str = "gC m-2 d-1",
                default_species: str | None = None) -> float:
    """Factor turning a carbon flux density in ``units`` into ``target`` (grams of C).

    Parameters
    ----------
    units : str
        The file's units attribute, e.g. ``"kg m-2 s-1"``, ``"PgC/m2/yr"``,
        ``"mol m-2 s-1"``, ``"gC m-2 d-1"``.
    species : {"C", "CO2"}, optional
        What the mass (or amount) counts, declared by the user: a tag in ``units``
        that contradicts it is an error.
    default_species : {"C", "CO2"}, optional
        What the mass counts when neither ``units`` nor ``species`` says (a product's
        convention, e.g. GFAS: CO2).
    target : str
        Carbon-mass flux density, default fluxscale's ``gC m-2 d-1``.

    Raises
    ------
    UnitError
        Unknown units, a wrong dimension (not mass or amount per area per time), or an
        unknown species.
    """
    plain, tagged = split_species(units)
    if tagged and species and tagged != species:
        raise UnitError(f"units {units!r} say {tagged}, but the variable is declared as {species}")
    species = tagged or species or default_species
    target_plain, _ = split_species(target)
    q = _parse(plain)
    ureg = _registry()
    mass_flux = ureg.parse_units("g m-2 d-1")
    amount_flux = ureg.parse_units("mol m-2 d-1")
    if q.dimensionality == mass_flux.dimensionality:
        if species is None:
            raise UnitError(f"units {units!r} do not say whether the mass is carbon or CO2 "
                            "(write e.g. 'gC m-2 d-1', or declare the species)")
        if species not in ("C", "CO2"):
            raise UnitError(f"unknown species {species!r} (C or CO2)")
        per_c = 1.0 if species == "C" else M_C / M_CO2
        grams = q.to(mass_flux).magnitude * per_c
    elif q.dimensionality == amount_flux.dimensionality:
        # one mol of CO2 holds one mol of C
        grams = q.to(amount_flux).magnitude * M_C
    else:
        raise UnitError(f"units {units!r} are not a carbon flux density (mass or amount per area per time)")
    return float(grams * _parse(target_plain).to(mass_flux).magnitude ** -1)
