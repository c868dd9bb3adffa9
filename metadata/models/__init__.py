"""The metadata app's models, one module per concern; imported here so that
``from metadata.models import X`` and the migrations' references keep working."""

from metadata.models.jobs import (
    ACTIVE_ITEM_STATES,
    COUNT_COLUMNS,
    DONE_ITEM_STATES,
    FINAL_JOB_STATES,
    WORKED_ITEM_STATES,
    ItemState,
    JobItem,
    JobItemQuerySet,
    JobKind,
    JobQueue,
    JobState,
    RegenerationJob,
    RegenerationJobQuerySet,
    RunnerSlot,
)
from metadata.models.lint import LintRun
from metadata.models.notices import Notice, NoticeLevel, NoticeQuerySet
from metadata.models.proposals import Proposal, ProposalQuerySet, ProposalReason, ProposalState
from metadata.models.ratewindow import RateWindow
from metadata.models.revisions import MetadataRevision, MetadataRevisionQuerySet, RevisionKind
from metadata.models.settings import (
    Detail,
    Settings,
    SettingsManager,
    Strategy,
    _env,
    _env_bool,
    _env_int,
    default_fields,
)

__all__ = [
    "ACTIVE_ITEM_STATES",
    "COUNT_COLUMNS",
    "DONE_ITEM_STATES",
    "FINAL_JOB_STATES",
    "WORKED_ITEM_STATES",
    "Detail",
    "ItemState",
    "JobItem",
    "JobItemQuerySet",
    "JobKind",
    "JobQueue",
    "JobState",
    "LintRun",
    "MetadataRevision",
    "MetadataRevisionQuerySet",
    "Notice",
    "NoticeLevel",
    "NoticeQuerySet",
    "Proposal",
    "ProposalQuerySet",
    "ProposalReason",
    "ProposalState",
    "RateWindow",
    "RegenerationJob",
    "RegenerationJobQuerySet",
    "RunnerSlot",
    "RevisionKind",
    "Settings",
    "SettingsManager",
    "Strategy",
    "_env",
    "_env_bool",
    "_env_int",
    "default_fields",
]
