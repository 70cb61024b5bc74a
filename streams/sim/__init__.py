"""Synthetic and real-data event sources for development, tests and demos.

:mod:`streams.sim.generator` simulates persona-driven shop traffic with known segment
ground truth; :mod:`streams.sim.retail` turns the UCI Online Retail invoices into order
events. Neither talks to Kafka: they yield JSON-ready dicts that a producer, a file
writer or the in-process replay can consume.
"""

from streams.sim.generator import Simulation, generate
from streams.sim.personas import DEFAULT_MIX, PERSONAS, Persona

__all__ = ["DEFAULT_MIX", "PERSONAS", "Persona", "Simulation", "generate"]
