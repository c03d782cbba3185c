import os
import pytest
import handoff_core.policy as pol
import handoff_core.model as model
from handoff_memory.repositories import MemoryMembers, MemoryDeliveries
from tests.property.test_handoff_machine import HandoffMachine
from hypothesis.stateful import run_state_machine_as_test

M = os.environ["MUTANT"]


def test_mutant(monkeypatch):
    if M == "escalator":
        orig = pol.recipients
        monkeypatch.setattr(pol, "recipients", lambda p, ms, e: orig(p, ms, "nobody"))
    if M == "inactive":

        async def eligible(self, account_id, roles):
            return [m for m in await self.current(account_id) if m.role in roles]

        monkeypatch.setattr(MemoryMembers, "eligible", eligible)
    if M == "reminders":
        orig_c = MemoryDeliveries.cancel_pending

        async def cancel(self, a, h, kinds, at):
            if len(kinds) == 1:
                return 0
            return await orig_c(self, a, h, kinds, at)

        monkeypatch.setattr(MemoryDeliveries, "cancel_pending", cancel)
    if M == "selfclaim":
        orig_cc = model.Handoff.check_claim

        def cc(self, claimer):
            claimer.require_can_act()
            self.require_open("claim")

        monkeypatch.setattr(model.Handoff, "check_claim", cc)
    if M == "viewer_withdraw":

        def cw(self, actor):
            if actor.id != self.created_by and not actor.is_manager and actor.is_senior:
                raise model.Forbidden("x")
            self.require_open("withdraw")

        monkeypatch.setattr(model.Handoff, "check_withdraw", cw)
    if M == "withdraw_cancel":
        orig_w = MemoryDeliveries.cancel_pending

        async def cancel2(self, a, h, kinds, at):
            if len(kinds) == 2:
                return 0
            return await orig_w(self, a, h, kinds, at)

        monkeypatch.setattr(MemoryDeliveries, "cancel_pending", cancel2)
    if M == "tenancy":
        from handoff_memory.repositories import MemoryHandoffs

        async def get(self, account_id, handoff_id):
            for (a, i), h in self._s.handoffs.items():
                if i == handoff_id:
                    return h

        monkeypatch.setattr(MemoryHandoffs, "get", get)
    if M == "no_reminders":
        orig_r = pol.plan_reminders
        import handoff_core.services.delivery as dl

        monkeypatch.setattr(
            dl, "plan_reminders", lambda h, m, r, n, i=pol.new_id: orig_r(h, m, r, n, i)[1:]
        )
    with pytest.raises((AssertionError, ExceptionGroup)):
        run_state_machine_as_test(HandoffMachine, settings=HandoffMachine.TestCase.settings)
