"""A biomarker-model release: every listed task's experts fit on the new model go live at once.

After ``lus experts refit`` has staged, for each task, a version fit on the next biomarker model
B (``staging`` alias), a release moves ``production`` of all of them to those versions in one
step (``ExpertRegistry.promote_many``). One step, because a half-done release leaves some tasks
answering only B's vectors and others only the current model's: every answer stays correct
(the lineage gate refuses the other model's vectors), but callers get refusals from whichever
half does not match the vectors they send. The biomarker tier is switched to B (made current)
right after; the expert tier cannot do that itself, so the release says what to switch.

``rollback_release`` moves the same tasks' ``production`` back in one step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from expert_service.registry.base import PRODUCTION, STAGING, ExpertRegistry
from lus.errors import FailedPrecondition, NotFound


@dataclass(frozen=True)
class ReleaseStep:
    """One task's move in a release.

    Attributes:
        task: The task.
        version: Its staged version, fit on the released biomarker model.
        previous: Where production pointed before (0: nowhere yet).
    """

    task: str
    version: int
    previous: int


def parse_tasks(text: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``: a comma-separated task list, each named once."""
    tasks = [part.strip() for part in text.split(",") if part.strip()]
    if not tasks:
        raise FailedPrecondition("name the tasks to release, comma-separated (--tasks a,b)")
    return list(dict.fromkeys(tasks))


def plan_release(
    registry: ExpertRegistry, tasks: Sequence[str], to_model: str
) -> list[ReleaseStep]:
    """What releasing ``to_model`` for ``tasks`` would move, after checking every task.

    Raises:
        FailedPrecondition: Any task without a staged version fit on ``to_model`` (all such
            tasks are named, with what to do); nothing is moved.
    """
    steps: list[ReleaseStep] = []
    problems: list[str] = []
    for task in tasks:
        try:
            state = registry.task_state(task)
        except NotFound:
            problems.append(f"{task}: no such task")
            continue
        staged = state.aliases.get(STAGING)
        if staged is None:
            problems.append(
                f"{task}: nothing staged (lus experts refit --task {task} --to-model {to_model})"
            )
            continue
        card = registry.card(task, staged)
        models = card.lineage.biomarker_models if card.lineage is not None else ()
        if to_model not in models:
            fitted = ", ".join(models) or "no recorded model"
            problems.append(
                f"{task}: staging v{staged} is fit on {fitted}, not {to_model} "
                f"(lus experts refit --task {task} --to-model {to_model})"
            )
            continue
        steps.append(ReleaseStep(task, staged, state.aliases.get(PRODUCTION, 0)))
    if problems:
        raise FailedPrecondition(
            f"release of biomarker model {to_model} refused, nothing moved: " + "; ".join(problems)
        )
    return steps


def release(registry: ExpertRegistry, tasks: Sequence[str], to_model: str) -> list[ReleaseStep]:
    """Move ``production`` of every task in ``tasks`` to its staged version fit on
    ``to_model``, all in one step; returns what moved.

    Raises:
        FailedPrecondition: See ``plan_release``; nothing is moved.
    """
    steps = plan_release(registry, tasks, to_model)
    registry.promote_many({step.task: step.version for step in steps}, PRODUCTION)
    return steps


def rollback_release(
    registry: ExpertRegistry, tasks: Sequence[str], from_model: str = ""
) -> dict[str, tuple[int, int]]:
    """Move ``production`` of every task back where it pointed before, all in one step;
    task -> ``(now, before)``.

    Args:
        registry: Where the tasks live.
        tasks: The tasks of the release.
        from_model: When given, refuse unless every task's production version is fit on it
            (so a rollback meant for one release cannot undo another).

    Raises:
        FailedPrecondition: A task's production is not fit on ``from_model``, or has no
            earlier version; nothing is moved.
    """
    if from_model:
        wrong = []
        for task in tasks:
            card = registry.card(task, registry.task_state(task).aliases.get(PRODUCTION, 0))
            models = card.lineage.biomarker_models if card.lineage is not None else ()
            if from_model not in models:
                wrong.append(f"{task} v{card.version} ({', '.join(models) or 'no model'})")
        if wrong:
            raise FailedPrecondition(
                f"rollback of biomarker model {from_model} refused, nothing moved: production "
                f"is not fit on it for {'; '.join(wrong)}"
            )
    return registry.rollback_many(list(tasks), PRODUCTION)


def biomarker_switch(to_model: str) -> str:
    """What the operators must do on the biomarker tier once the experts are released."""
    return (
        f"Now make {to_model} the current model of the biomarker tier: set "
        f"LUS_BIOMARKER_ARTIFACT to its artifact and LUS_BIOMARKER_NEXT_ARTIFACT to the previous "
        "current one (kept served, so a rollback finds its vectors), then roll the Deployment. "
        "Until then these experts refuse vectors of the old current model (FAILED_PRECONDITION, "
        f"never a wrong answer); callers that ask the biomarker tier for {to_model}'s vectors "
        "(model_version) are answered."
    )
