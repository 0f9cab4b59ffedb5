"""The queues, so routing is a name, not a string scattered through the code."""

from enum import Enum


class Queue(str, Enum):
    NIGHT = "night"  # the nightly kick-off, polling and batches
    REALTIME = "realtime"  # the webhook's leads: never stuck behind a night's batches
    ADMIN = "admin"  # re-syncs started by an operator, and the sweeper (never behind a night's backlog)
