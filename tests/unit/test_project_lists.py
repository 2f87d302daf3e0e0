"""The hand-kept lists agree with the code (docs/development.md, "Lists to update"): action groups, the README's
tables, docs/runbooks.md, the DAG helper's COLLECTED, version_added, argument specs and molecule scenarios.
Pure file reads, no Ansible or Airflow import. Each failure says what to add where."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (ROOT / "plugins/modules").glob("*.py") if p.stem != "__init__")
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if p.is_dir())
PLAYBOOKS = sorted(p.name for p in (ROOT / "playbooks").glob("*.yml"))
FQCN = "runbook.recovery."

# The connection a module takes, told by the argument-spec helper it builds its spec from, and the action group of
# meta/runtime.yml whose module_defaults must reach it (a module in a group must accept every option of that group).
CONNECTION_SPECS = {"postgres_argument_spec": "postgres", "redis_argument_spec": "redis",
                    "aws_argument_spec": "aws", "resources_argument_spec": "aws"}
# Modules that take no connection options, hence belong to no action group.
NO_CONNECTION = {
    "audit_log",  # appends a JSON line to a local file
    "sealed_plan",  # writes and reads a plan file on the controller
    "health_report",  # merges findings already gathered into a local report file
    "app_services",  # the host's own systemd units and Docker daemon (its socket, docker_host)
    "app_services_info",  # reads the same units and containers
}
# A playbook with no DAG says why in its own header comment, where the next person to open it reads it.
NO_DAG_LINE = re.compile(r"^# No DAG: (\S.*)$", re.MULTILINE)


def text(relative: str) -> str:
    return (ROOT / relative).read_text()


def fail_if(problems: list[str]) -> None:
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def backticked(markdown: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", markdown))


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of every Markdown table row (`\\|` inside a cell is not a separator)."""
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            for line in markdown.splitlines() if line.lstrip().startswith("|")]


def readme_section(heading: str) -> str:
    readme = text("README.md")
    start = readme.index(f"\n## {heading}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start:end if end != -1 else None]


def layout_cell(path: str) -> set[str]:
    [row] = [r for r in table_rows(readme_section("Layout")) if r[0] == f"`{path}`"]
    return backticked(row[1])


def connections(module: str) -> set[str]:
    source = text(f"plugins/modules/{module}.py")
    return {group for helper, group in CONNECTION_SPECS.items() if re.search(rf"\b{helper}\(", source)}


def action_groups() -> dict[str, list[str]]:
    return yaml.safe_load(text("meta/runtime.yml")).get("action_groups") or {}


def documentation(module: str) -> dict:
    tree = ast.parse(text(f"plugins/modules/{module}.py"))
    [doc] = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
             and any(getattr(t, "id", None) == "DOCUMENTATION" for t in node.targets)]
    return yaml.safe_load(doc)


def dag_files() -> list[Path]:
    """dags/*.py that Airflow parses (the patterns of dags/.airflowignore, regexp syntax, are left out)."""
    ignore_file = ROOT / "dags/.airflowignore"
    ignored = [p for p in ignore_file.read_text().splitlines() if p.strip() and not p.startswith("#")] \
        if ignore_file.exists() else []
    return [p for p in sorted((ROOT / "dags").glob("*.py")) if not any(re.search(i, p.name) for i in ignored)]


def dag_factories() -> set[str]:
    """Helpers of dags/runbook_airflow.py that make a DAG: their first parameter is `dag_id`."""
    tree = ast.parse(text("dags/runbook_airflow.py"))
    return {f.name for f in tree.body if isinstance(f, ast.FunctionDef) and f.args.args
            and f.args.args[0].arg == "dag_id"}


def _name(func: ast.expr) -> str:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _const(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def dags_and_playbooks(path: Path) -> tuple[set[str], set[str]]:
    """The DAG ids a DAG file defines (DAG(...), @dag, the helpers' factories) and the playbooks its tasks run
    (a `playbook=` argument, or the factories' second argument). Mentions in doc_md do not count."""
    factories, dag_ids, playbooks = dag_factories(), set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                if _name(deco.func if isinstance(deco, ast.Call) else deco) == "dag":
                    keywords = {k.arg: k.value for k in deco.keywords} if isinstance(deco, ast.Call) else {}
                    dag_ids.add(_const(keywords.get("dag_id")) or node.name)
        if not isinstance(node, ast.Call):
            continue
        name, keywords = _name(node.func), {k.arg: k.value for k in node.keywords}
        if name == "DAG" or name in factories:
            dag_ids.add(_const(node.args[0] if node.args else keywords.get("dag_id")))
        if name in factories:
            playbooks.add(_const(node.args[1] if len(node.args) > 1 else keywords.get("playbook")))
        playbooks.add(_const(keywords.get("playbook")))
    return dag_ids - {None}, playbooks - {None}


# --- modules -----------------------------------------------------------------------------------------------------

def test_every_module_is_in_the_action_group_of_each_connection_it_takes():
    groups = action_groups()
    problems = [f"meta/runtime.yml: action group `{g}` has no connection kind this test knows; add its argument-spec "
                f"helper to CONNECTION_SPECS in tests/unit/test_project_lists.py."
                for g in groups if g not in CONNECTION_SPECS.values()]
    member_of = {m: {g for g, members in groups.items() if m in members} for m in MODULES}
    for group, members in groups.items():
        problems += [f"meta/runtime.yml: action group `{group}` lists `{m}`, which is not in plugins/modules/: "
                     f"remove it." for m in members if m not in MODULES]
    for module in MODULES:
        takes, member = connections(module), member_of[module]
        problems += [f"plugins/modules/{module}.py takes {g} connection options: add `- {module}` under "
                     f"`action_groups: {g}:` in meta/runtime.yml." for g in sorted(takes - member)]
        problems += [f"meta/runtime.yml: `{module}` is in action group `{g}` but takes no {g} options "
                     f"(module_defaults for the group would fail it): remove it from that group."
                     for g in sorted(member - takes)]
        if not takes and module not in NO_CONNECTION:
            problems.append(f"plugins/modules/{module}.py takes no connection options (no *_argument_spec helper): "
                            f"add it to NO_CONNECTION in tests/unit/test_project_lists.py, with a comment saying what "
                            f"it works on, or build its spec from the helper of its connection.")
        if takes and module in NO_CONNECTION:
            problems.append(f"plugins/modules/{module}.py takes {', '.join(sorted(takes))} options: remove it from "
                            f"NO_CONNECTION in tests/unit/test_project_lists.py.")
    problems += [f"NO_CONNECTION in tests/unit/test_project_lists.py names `{m}`, which is not in plugins/modules/: "
                 f"remove it." for m in sorted(NO_CONNECTION - set(MODULES))]
    fail_if(problems)


def test_every_module_is_in_the_readme_layout():
    listed = layout_cell("plugins/modules/")
    fail_if([f"README.md, Layout table, row `plugins/modules/`: add `{m}`." for m in MODULES if m not in listed]
            + [f"README.md, Layout table, row `plugins/modules/`: `{m}` is not a module any more; remove it."
               for m in sorted(listed) if re.fullmatch(r"[a-z0-9_]+", m) and m not in MODULES])


def test_every_module_has_version_added():
    """antsibull-changelog lists a module as new in the release its version_added names."""
    version = yaml.safe_load(text("galaxy.yml"))["version"]
    problems = []
    for module in MODULES:
        try:
            added = documentation(module).get("version_added")
        except yaml.YAMLError as error:
            problems.append(f"plugins/modules/{module}.py: DOCUMENTATION is not valid YAML ({error}).")
            continue
        if not re.fullmatch(r"\d+\.\d+\.\d+", str(added or "")):
            problems.append(f"plugins/modules/{module}.py: DOCUMENTATION has no version_added (or not X.Y.Z): add "
                            f"`version_added: X.Y.Z`, the first release that ships it (galaxy.yml is at {version}).")
    fail_if(problems)


# Modules of other collections whose results a plan's approval shows (scale's PostgreSQL settings).
OTHER_COLLECTIONS_COLLECTED = {"community.postgresql.postgresql_set"}


def test_collected_names_existing_modules():
    """The results of these modules become a DAG task's XCom (dags/runbook_airflow.py)."""
    tree = ast.parse(text("dags/runbook_airflow.py"))
    [collected] = [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                   and any(getattr(t, "id", None) == "COLLECTED" for t in node.targets)]
    fail_if([f"dags/runbook_airflow.py: COLLECTED names `{name}`, not `{FQCN}<a module of plugins/modules/>`: "
             f"fix or remove it." for name in collected if name not in OTHER_COLLECTIONS_COLLECTED
             and (not name.startswith(FQCN) or name.removeprefix(FQCN) not in MODULES)]
            + [f"dags/runbook_airflow.py: COLLECTED names `{name}` twice." for name in set(collected)
               if collected.count(name) > 1])


# --- roles -------------------------------------------------------------------------------------------------------

def test_every_role_has_argument_specs_with_version_added_and_every_default_documented():
    problems = []
    for role in ROLES:
        specs_path = ROOT / "roles" / role / "meta/argument_specs.yml"
        if not specs_path.exists():
            problems.append(f"roles/{role}: add meta/argument_specs.yml with a `main` entry point documenting every "
                            f"variable of defaults/main.yml (as roles/pg_backup/meta/argument_specs.yml does).")
            continue
        entry_points = (yaml.safe_load(specs_path.read_text()) or {}).get("argument_specs") or {}
        if "main" not in entry_points:
            problems.append(f"roles/{role}/meta/argument_specs.yml: add the `main` entry point.")
        for name, entry in entry_points.items():
            if not re.fullmatch(r"\d+\.\d+\.\d+", str(entry.get("version_added") or "")):
                problems.append(f"roles/{role}/meta/argument_specs.yml: entry point `{name}` has no version_added: "
                                f"add `version_added: X.Y.Z` (antsibull-changelog lists new roles by `main`'s).")
        options = {o for entry in entry_points.values() for o in (entry.get("options") or {})}
        defaults_path = ROOT / "roles" / role / "defaults/main.yml"
        defaults = (yaml.safe_load(defaults_path.read_text()) or {}) if defaults_path.exists() else {}
        problems += [f"roles/{role}/defaults/main.yml sets `{v}`, which no entry point of "
                     f"roles/{role}/meta/argument_specs.yml documents: add it under `options:`."
                     for v in defaults if v not in options]
    fail_if(problems)


def test_every_role_has_a_molecule_default_scenario():
    fail_if([f"roles/{role}: add molecule/default/ (molecule.yml, converge.yml, verify.yml; copy "
             f"roles/pg_backup/molecule/default/molecule.yml, which uses tests/molecule/'s shared prepare)."
             for role in ROLES if not (ROOT / "roles" / role / "molecule/default/molecule.yml").exists()])


def test_every_role_is_in_the_readme_layout():
    listed = layout_cell("roles/")
    fail_if([f"README.md, Layout table, row `roles/`: add `{r}`." for r in ROLES if r not in listed])


# --- playbooks and DAGs ------------------------------------------------------------------------------------------

def test_every_playbook_has_a_row_in_docs_runbooks_and_a_line_in_the_readme():
    playbook_cells = " ".join(row[2] for row in table_rows(text("docs/runbooks.md")) if len(row) > 2)
    procedures = readme_section("Procedures")
    problems = [f"docs/runbooks.md: add a row whose Playbook column runs `ansible-playbook playbooks/{p} ...` "
                f"(the source runbook's procedure it performs, and what it does better)."
                for p in PLAYBOOKS if p not in playbook_cells]
    problems += [f"README.md, Procedures: add an `ansible-playbook playbooks/{p} ...` line with what it does."
                 for p in PLAYBOOKS if f"playbooks/{p}" not in procedures]
    fail_if(problems)


def test_every_playbook_has_a_dag_or_says_why_not():
    run_by: dict[str, list[str]] = {}
    for path in dag_files():
        dag_ids, playbooks = dags_and_playbooks(path)
        for playbook in playbooks:
            run_by.setdefault(playbook, []).append(path.name)
    problems = [f"dags/: a task runs `{p}`, which is not in playbooks/: fix the name."
                for p in sorted(run_by) if p not in PLAYBOOKS]
    for playbook in PLAYBOOKS:
        reason = NO_DAG_LINE.search(text(f"playbooks/{playbook}"))
        if playbook not in run_by and not reason:
            problems.append(f"playbooks/{playbook}: no DAG runs it. Add one (scheduled_procedure in "
                            f"dags/scheduled.py, manual_procedure in dags/manual.py), or write why not in its "
                            f"header comment as a line `# No DAG: <reason>`.")
        if playbook in run_by and reason:
            problems.append(f"playbooks/{playbook}: {', '.join(run_by[playbook])} runs it; remove its "
                            f"`# No DAG:` line.")
    fail_if(problems)


def test_every_dag_is_in_the_readme_airflow_table():
    in_table = {name for row in table_rows(readme_section("Airflow")) for name in backticked(row[0])}
    defined: dict[str, str] = {}
    problems = []
    for path in dag_files():
        dag_ids = dags_and_playbooks(path)[0]
        if not dag_ids:
            problems.append(f"dags/{path.name} defines no DAG this test can find (DAG(\"id\", ...), @dag, or a helper "
                            f"of dags/runbook_airflow.py whose first parameter is dag_id): use one of those, or list "
                            f"the file in dags/.airflowignore if it is not a DAG file.")
        defined.update(dict.fromkeys(dag_ids, path.name))
    problems += [f"README.md, Airflow table: add `{d}` (dags/{f}) with when it runs and the playbook it runs."
                 for d, f in sorted(defined.items()) if d not in in_table]
    problems += [f"README.md, Airflow table: `{d}` is no DAG of dags/; remove it."
                 for d in sorted(in_table - set(defined))]
    fail_if(problems)
