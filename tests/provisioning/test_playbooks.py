"""The playbooks and roles as a district's IT would check them before a run."""

from __future__ import annotations

import pytest

from tests.provisioning.conftest import PLAYBOOKS, PROVISIONING, ansible


def test_every_playbook_passes_the_syntax_check_with_the_example_inventory() -> None:
    result = ansible("ansible-playbook", "--syntax-check", "-i", "inventories/example", *PLAYBOOKS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {path.name for path in PROVISIONING.glob("*.yml")} == set(PLAYBOOKS)


@pytest.mark.slow
def test_ansible_lint_finds_nothing_with_the_production_profile() -> None:
    result = ansible(
        "ansible-lint", "--profile", "production", "--offline", "--project-dir", ".", "-f", "pep8"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Profile 'production' was required, and it passed" in result.stderr
