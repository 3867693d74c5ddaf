"""``gitsail ci init github|gitlab``: the article's delivery pipeline as the CI's own files.

The pipeline (the seed's "complete GitOps pipeline", with its glue replaced by gitsail):

1. **build** the image from the application repository;
2. **scan** it (Trivy; a CRITICAL finding fails the pipeline) *before* it is pushed;
3. **push** it, tagged ``sha-<commit>`` (immutable: one tag, one commit), on the default
   branch only (pull requests build and scan, never push);
4. **bump** the manifests repository: ``gitsail image set ENV_DIR NAME=IMAGE:sha-<commit>
   --push`` in a checkout of it (the tag is verified in the registry first), so the change
   is one commit and the controller syncs it; CI never holds cluster credentials;
5. **preview** every pull/merge request of the manifests repository: ``gitsail preview --pr``
   of its base and head, posted as a comment (exit 1 of preview means "something changes",
   not a failure), and ``gitsail doctor`` as a check (SARIF for GitHub's code scanning).

What the user gives is checked before it is written (an image reference, a repository URL, a
relative directory, a branch name) and reaches the shell only through environment variables
(``"$VAR"``), never by text substitution into a script, so no value can become a command.
The files are YAML emitted by PyYAML from data (quoting is the emitter's job), each with a
header saying how it was made and which secrets it needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml

from gitsail.workflow.imageref import ImageRefError, parse_image

__all__ = [
    "GITHUB",
    "GITLAB",
    "PROVIDERS",
    "CIError",
    "CIFile",
    "CIOptions",
    "Pipeline",
    "SecretNeed",
    "generate",
]

GITHUB = "github"
GITLAB = "gitlab"
PROVIDERS = (GITHUB, GITLAB)

# Pinned versions of what the pipeline runs (bump them deliberately).
CHECKOUT = "actions/checkout@v4"
SETUP_BUILDX = "docker/setup-buildx-action@v3"
LOGIN = "docker/login-action@v3"
BUILD_PUSH = "docker/build-push-action@v6"
TRIVY_ACTION = "aquasecurity/trivy-action@0.28.0"
UPLOAD_ARTIFACT = "actions/upload-artifact@v4"
DOWNLOAD_ARTIFACT = "actions/download-artifact@v4"
UPLOAD_SARIF = "github/codeql-action/upload-sarif@v3"
DOCKER_IMAGE = "docker:27"
TRIVY_IMAGE = "aquasec/trivy:0.57.1"
CURL_IMAGE = "curlimages/curl:8.11.0"

_REL_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}$")
_BRANCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")
_GITHUB_SLUG = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")
_URL_PATH = re.compile(r"^/[A-Za-z0-9_.~/-]{1,300}$")
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?$")


class CIError(ValueError):
    """An option that cannot go into a pipeline (said before anything is written)."""


@dataclass(frozen=True)
class SecretNeed:
    name: str
    purpose: str
    where: str  # "app" (the application repository) | "manifests"


@dataclass(frozen=True)
class CIFile:
    path: str  # relative to the repository root
    text: str
    repository: str  # "app" | "manifests" | "both"


@dataclass(frozen=True)
class Pipeline:
    provider: str
    files: tuple[CIFile, ...]
    secrets: tuple[SecretNeed, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CIOptions:
    provider: str
    image: str = ""  # what CI pushes; default: the CI's own registry for this project
    manifests_repo: str = ""  # URL; "" = this repository holds the manifests too
    environment: str = "apps/overlays/development"
    manifests_image: str = ""  # the name the manifests use, when it is not ``image``
    branch: str = "main"
    gitsail_image: str = "ghcr.io/gitsail/gitsail:0.1.0"
    context: str = "."


# -- validation ----------------------------------------------------------------------------


def _image_name(value: str, what: str, *, expressions: tuple[str, ...] = ()) -> str:
    """An image name without tag or digest (the CI's own variables allowed as written)."""
    if value in expressions:
        return value
    try:
        ref = parse_image(value)
    except ImageRefError as exc:
        raise CIError(f"{what} {value!r}: {exc}") from None
    if ref.tag or ref.digest:
        raise CIError(f"{what} {value!r}: give the name only; CI tags it sha-<commit>")
    return ref.name


def _pinned_image(value: str) -> str:
    try:
        ref = parse_image(value)
    except ImageRefError as exc:
        raise CIError(f"--gitsail-image {value!r}: {exc}") from None
    if not (ref.digest or (ref.tag and ref.tag != "latest")):
        raise CIError(f"--gitsail-image {value!r}: pin a version or digest (not latest)")
    return value


def _relative(value: str, what: str) -> str:
    clean = value.strip().removeprefix("./").rstrip("/") or "."
    if clean == ".":
        return clean
    if not _REL_PATH.match(clean) or ".." in clean.split("/") or "//" in clean:
        raise CIError(f"{what} {value!r}: a relative directory (letters, digits, . _ - /)")
    return clean


@dataclass(frozen=True)
class _Repo:
    url: str  # https URL without credentials
    host: str
    path: str  # /owner/name(.git)

    @property
    def slug(self) -> str:
        return self.path.strip("/").removesuffix(".git")


def _manifests_repo(value: str) -> _Repo | None:
    if not value:
        return None
    if _GITHUB_SLUG.match(value):
        value = f"https://github.com/{value}"
    parts = urlsplit(value)
    if parts.scheme != "https":
        raise CIError(f"--manifests-repo {value!r}: an https:// URL (CI pushes with a token)")
    if parts.username or parts.password or "@" in parts.netloc:
        raise CIError("--manifests-repo: no credentials in the URL; CI takes a token secret")
    if not _HOST.match(parts.netloc) or not _URL_PATH.match(parts.path or ""):
        raise CIError(f"--manifests-repo {value!r}: not a plain repository URL")
    if parts.query or parts.fragment or ".." in parts.path.split("/"):
        raise CIError(f"--manifests-repo {value!r}: not a plain repository URL")
    return _Repo(f"https://{parts.netloc}{parts.path}", parts.netloc, parts.path)


def _checked(options: CIOptions) -> CIOptions:
    if options.provider not in PROVIDERS:
        raise CIError(f"{options.provider!r}: give one of {', '.join(PROVIDERS)}")
    if not _BRANCH.match(options.branch) or ".." in options.branch:
        raise CIError(f"--branch {options.branch!r} is not a branch name")
    _relative(options.environment, "--environment")
    _relative(options.context, "--context")
    _pinned_image(options.gitsail_image)
    if options.image:
        _image_name(options.image, "--image")
    if options.manifests_image:
        _image_name(options.manifests_image, "--manifests-image")
    repo = _manifests_repo(options.manifests_repo)
    if repo is not None and options.provider == GITHUB and repo.host != "github.com":
        raise CIError(
            f"--manifests-repo {options.manifests_repo!r}: a GitHub workflow checks out "
            "github.com repositories (OWNER/NAME or https://github.com/OWNER/NAME)"
        )
    return options


# -- YAML out ------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block scalars for scripts, no anchors, keys in the order written."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str)


def _dump(header: list[str], data: dict[str, Any]) -> str:
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=False)
    return "".join(f"# {line}".rstrip() + "\n" for line in header) + "\n" + body


def _script(*lines: str) -> str:
    return "\n".join(lines) + "\n"


# -- GitHub Actions ------------------------------------------------------------------------

_GIT_IDENTITY = _script(
    'git config user.name "github-actions[bot]"',
    'git config user.email "github-actions[bot]@users.noreply.github.com"',
)
_PREVIEW = _script(
    "set +e",
    'gitsail preview --pr --repo "$REPO_URL" "$BASE_SHA" "$HEAD_SHA" --offline -o markdown '
    "> preview.md",
    "status=$?",
    "set -e",
    "# 0: no app changes, 1: apps change (shown in preview.md), anything else: an error",
    'if [ "$status" -gt 1 ]; then exit "$status"; fi',
)


def _github_build(options: CIOptions) -> tuple[CIFile, list[SecretNeed]]:
    image = options.image or "ghcr.io/${{ github.repository }}"
    uses_ghcr = image.startswith("ghcr.io/")
    registry = image.split("/", 1)[0]
    manifests = _manifests_repo(options.manifests_repo)
    name_in_manifests = options.manifests_image or image
    secrets: list[SecretNeed] = []
    if uses_ghcr:
        login_user, login_password = "${{ github.actor }}", "${{ secrets.GITHUB_TOKEN }}"
    else:
        login_user = "${{ secrets.REGISTRY_USERNAME }}"
        login_password = "${{ secrets.REGISTRY_PASSWORD }}"  # noqa: S105 - a reference
        secrets += [
            SecretNeed("REGISTRY_USERNAME", f"push to {registry}", "app"),
            SecretNeed("REGISTRY_PASSWORD", f"push to {registry} (a token)", "app"),
        ]
    checkout_manifests: dict[str, Any] = {"name": "Check out the manifests", "uses": CHECKOUT}
    if manifests is not None:
        checkout_manifests["with"] = {
            "repository": manifests.slug,
            "ref": options.branch,
            "token": "${{ secrets.GITOPS_TOKEN }}",
        }
        secrets.append(
            SecretNeed(
                "GITOPS_TOKEN",
                f"push to {manifests.url} (contents: write on that repository only)",
                "app",
            )
        )
    else:
        checkout_manifests["with"] = {"ref": options.branch}
    tag = "sha-${{ github.sha }}"
    data: dict[str, Any] = {
        "name": "gitsail delivery",
        "on": {
            "push": {"branches": [options.branch]},
            "pull_request": {"branches": [options.branch]},
        },
        "permissions": {"contents": "read"},
        "env": {"IMAGE": image, "TAG": tag},
        "jobs": {
            "build": {
                "name": "Build, scan, push",
                "runs-on": "ubuntu-latest",
                "permissions": {"contents": "read", "packages": "write"},
                "steps": [
                    {"uses": CHECKOUT},
                    {"name": "Set up Docker Buildx", "uses": SETUP_BUILDX},
                    {
                        "name": "Build",
                        "uses": BUILD_PUSH,
                        "with": {
                            "context": options.context,
                            "load": True,
                            "push": False,
                            "tags": "${{ env.IMAGE }}:${{ env.TAG }}",
                            "cache-from": "type=gha",
                            "cache-to": "type=gha,mode=max",
                        },
                    },
                    {
                        "name": "Scan (a CRITICAL vulnerability fails the build)",
                        "uses": TRIVY_ACTION,
                        "with": {
                            "image-ref": "${{ env.IMAGE }}:${{ env.TAG }}",
                            "exit-code": "1",
                            "severity": "CRITICAL",
                            "ignore-unfixed": True,
                        },
                    },
                    {
                        "name": "Log in to the registry",
                        "if": "github.event_name == 'push'",
                        "uses": LOGIN,
                        "with": {
                            "registry": registry,
                            "username": login_user,
                            "password": login_password,
                        },
                    },
                    {
                        "name": "Push",
                        "if": "github.event_name == 'push'",
                        "run": 'docker push "$IMAGE:$TAG"\n',
                    },
                ],
            },
            "update-manifests": {
                "name": "Bump the image in the manifests repository",
                "if": f"github.event_name == 'push' && github.ref == 'refs/heads/{options.branch}'",
                "needs": ["build"],
                "runs-on": "ubuntu-latest",
                "permissions": {
                    "contents": "write" if manifests is None else "read",
                    "packages": "read",
                },
                "container": {"image": options.gitsail_image, "options": "--user 0"},
                "env": {
                    "ENVIRONMENT": options.environment,
                    "NAME": name_in_manifests,
                    "REGISTRY": registry,
                    "REGISTRY_USERNAME": login_user,
                    "REGISTRY_PASSWORD": login_password,
                },
                "steps": [
                    checkout_manifests,
                    {
                        "name": "Registry credentials for the tag check",
                        "run": _script(
                            'mkdir -p "$HOME/.docker"',
                            'auth=$(printf \'%s:%s\' "$REGISTRY_USERNAME" "$REGISTRY_PASSWORD" '
                            "| base64 -w0)",
                            'printf \'{"auths": {"%s": {"auth": "%s"}}}\' '
                            '"$REGISTRY" "$auth" > "$HOME/.docker/config.json"',
                        ),
                    },
                    {
                        "name": "gitsail image set (one commit, pushed)",
                        "run": _GIT_IDENTITY
                        + 'git config --global --add safe.directory "$PWD"\n'
                        + 'gitsail image set "$ENVIRONMENT" "$NAME=$IMAGE:$TAG" --push\n',
                    },
                ],
            },
        },
    }
    header = [
        "The article's delivery pipeline, written by `gitsail ci init github`.",
        "build -> scan (Trivy, CRITICAL fails) -> push (default branch only) ->",
        "`gitsail image set` commits the new tag to the manifests repository; the controller",
        "syncs it. CI needs no cluster credentials.",
        "Secrets: "
        + (", ".join(s.name for s in secrets) if secrets else "only the built-in GITHUB_TOKEN"),
    ]
    return CIFile(".github/workflows/gitsail-delivery.yml", _dump(header, data), "app"), secrets


def _github_preview(options: CIOptions) -> CIFile:
    data: dict[str, Any] = {
        "name": "gitsail preview",
        "on": {"pull_request": {"branches": [options.branch]}},
        "permissions": {"contents": "read"},
        "jobs": {
            "preview": {
                "name": "Which apps change, rendered",
                "runs-on": "ubuntu-latest",
                "container": {"image": options.gitsail_image, "options": "--user 0"},
                "permissions": {"contents": "read", "security-events": "write"},
                "env": {
                    "REPO_URL": "${{ github.server_url }}/${{ github.repository }}",
                    "BASE_SHA": "${{ github.event.pull_request.base.sha }}",
                    "HEAD_SHA": "${{ github.event.pull_request.head.sha }}",
                    "GITSAIL_GIT_USERNAME": "x-access-token",
                    "GITSAIL_GIT_PASSWORD": "${{ secrets.GITHUB_TOKEN }}",
                },
                "steps": [
                    {"uses": CHECKOUT},
                    {"name": "gitsail preview --pr", "run": _PREVIEW},
                    {
                        "name": "gitsail doctor (the GitOps checklist)",
                        "run": _script(
                            "set +e",
                            "gitsail doctor . -o sarif > doctor.sarif",
                            "status=$?",
                            "set -e",
                            'if [ "$status" -gt 1 ]; then exit "$status"; fi',
                        ),
                    },
                    {
                        "name": "Show the checklist findings on the pull request",
                        "uses": UPLOAD_SARIF,
                        "with": {"sarif_file": "doctor.sarif", "category": "gitsail-doctor"},
                    },
                    {
                        "uses": UPLOAD_ARTIFACT,
                        "with": {"name": "gitsail-preview", "path": "preview.md"},
                    },
                ],
            },
            "comment": {
                "name": "Comment the preview",
                "needs": ["preview"],
                "runs-on": "ubuntu-latest",
                "permissions": {"pull-requests": "write"},
                "env": {
                    "GH_TOKEN": "${{ secrets.GITHUB_TOKEN }}",
                    "GH_REPO": "${{ github.repository }}",
                    "PR": "${{ github.event.pull_request.number }}",
                },
                "steps": [
                    {"uses": DOWNLOAD_ARTIFACT, "with": {"name": "gitsail-preview"}},
                    {
                        "name": "Post or update the comment",
                        "run": _script(
                            'gh pr comment "$PR" --body-file preview.md --edit-last '
                            '|| gh pr comment "$PR" --body-file preview.md'
                        ),
                    },
                ],
            },
        },
    }
    header = [
        "Preview of every pull request of the manifests repository, written by",
        "`gitsail ci init github`: `gitsail preview --pr` (which apps the change affects and",
        "their rendered diff) as a comment, `gitsail doctor` as code-scanning findings.",
        "Secrets: only the built-in GITHUB_TOKEN.",
    ]
    repository = "manifests" if options.manifests_repo else "both"
    return CIFile(".github/workflows/gitsail-preview.yml", _dump(header, data), repository)


# -- GitLab CI -----------------------------------------------------------------------------


def _gitlab(options: CIOptions) -> tuple[list[CIFile], list[SecretNeed], list[str]]:
    image = options.image or "$CI_REGISTRY_IMAGE"
    own_registry = image.startswith("$CI_REGISTRY_IMAGE")
    manifests = _manifests_repo(options.manifests_repo)
    secrets: list[SecretNeed] = []
    if not own_registry:
        secrets += [
            SecretNeed("REGISTRY_USER", f"push to {image.split('/', 1)[0]}", "app"),
            SecretNeed("REGISTRY_PASSWORD", f"push to {image.split('/', 1)[0]} (masked)", "app"),
        ]
    secrets.append(
        SecretNeed(
            "GITOPS_TOKEN",
            "a project access token with write_repository on the manifests repository "
            "(masked, protected)",
            "app",
        )
    )
    secrets.append(
        SecretNeed(
            "PREVIEW_TOKEN",
            "a project access token with api scope, to comment on merge requests (masked)",
            "manifests",
        )
    )
    registry = "$CI_REGISTRY" if own_registry else image.split("/", 1)[0]
    user = "$CI_REGISTRY_USER" if own_registry else "$REGISTRY_USER"
    password = "$CI_REGISTRY_PASSWORD" if own_registry else "$REGISTRY_PASSWORD"
    manifests_url = manifests.url if manifests else "$CI_PROJECT_URL.git"
    default_branch = "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"
    gitsail_image = {"name": options.gitsail_image, "entrypoint": [""]}
    data: dict[str, Any] = {
        "workflow": {
            "rules": [
                {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'},
                {"if": "$CI_COMMIT_BRANCH && $CI_OPEN_MERGE_REQUESTS", "when": "never"},
                {"if": "$CI_COMMIT_BRANCH"},
            ]
        },
        "stages": ["build", "scan", "push", "deploy", "preview"],
        "variables": {
            "IMAGE": image,
            "TAG": "sha-$CI_COMMIT_SHA",
            "ENVIRONMENT": options.environment,
            "NAME": options.manifests_image or image,
            "MANIFESTS_URL": manifests_url,
            "MANIFESTS_BRANCH": options.branch,
        },
        "build": {
            "stage": "build",
            "image": DOCKER_IMAGE,
            "services": [f"{DOCKER_IMAGE}-dind"],
            "rules": [{"if": '$CI_PIPELINE_SOURCE != "merge_request_event"'}],
            "script": [
                f'docker build --tag "$IMAGE:$TAG" "{options.context}"',
                'docker save --output image.tar "$IMAGE:$TAG"',
            ],
            "artifacts": {"paths": ["image.tar"], "expire_in": "1 day"},
        },
        "scan": {
            "stage": "scan",
            "image": {"name": TRIVY_IMAGE, "entrypoint": [""]},
            "needs": ["build"],
            "rules": [{"if": '$CI_PIPELINE_SOURCE != "merge_request_event"'}],
            "script": [
                "trivy image --input image.tar --exit-code 1 --severity CRITICAL --ignore-unfixed"
            ],
        },
        "push": {
            "stage": "push",
            "image": DOCKER_IMAGE,
            "services": [f"{DOCKER_IMAGE}-dind"],
            "needs": ["build", "scan"],
            "rules": [{"if": default_branch}],
            "script": [
                f'printf "%s" "{password}" | docker login --username "{user}" '
                f'--password-stdin "{registry}"',
                "docker load --input image.tar",
                'docker push "$IMAGE:$TAG"',
            ],
        },
        "update-manifests": {
            "stage": "deploy",
            "image": gitsail_image,
            "needs": ["push"],
            "rules": [{"if": default_branch}],
            "script": [
                'mkdir -p "$HOME/.docker"',
                f'auth=$(printf \'%s:%s\' "{user}" "{password}" | base64 -w0)',
                'printf \'{"auths": {"%s": {"auth": "%s"}}}\' '
                f'"{registry}" "$auth" > "$HOME/.docker/config.json"',
                'header="Authorization: Basic $(printf \'oauth2:%s\' "$GITOPS_TOKEN" '
                '| base64 -w0)"',
                'git -c http.extraHeader="$header" clone --branch "$MANIFESTS_BRANCH" '
                '-- "$MANIFESTS_URL" manifests',
                "cd manifests",
                'git config http.extraHeader "$header"',
                'git config user.name "gitsail CI"',
                'git config user.email "gitsail-ci@$CI_SERVER_HOST"',
                'gitsail image set "$ENVIRONMENT" "$NAME=$IMAGE:$TAG" --push',
            ],
        },
        "preview": {
            "stage": "preview",
            "image": gitsail_image,
            "rules": [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}],
            "variables": {
                "REPO_URL": "$CI_MERGE_REQUEST_PROJECT_URL.git",
                "BASE_SHA": "$CI_MERGE_REQUEST_DIFF_BASE_SHA",
                "HEAD_SHA": "$CI_COMMIT_SHA",
                "GITSAIL_GIT_USERNAME": "gitlab-ci-token",
                "GITSAIL_GIT_PASSWORD": "$CI_JOB_TOKEN",
            },
            "script": [
                "set +e",
                'gitsail preview --pr --repo "$REPO_URL" "$BASE_SHA" "$HEAD_SHA" --offline '
                "-o markdown > preview.md",
                "status=$?",
                "gitsail doctor . -o json > doctor.json",
                "doctor=$?",
                "set -e",
                "# preview/doctor: 0 nothing, 1 changes or findings, anything else an error",
                'if [ "$status" -gt 1 ] || [ "$doctor" -gt 1 ]; then exit 1; fi',
            ],
            "artifacts": {"paths": ["preview.md", "doctor.json"], "expire_in": "1 week"},
        },
        "comment-preview": {
            "stage": "preview",
            "image": {"name": CURL_IMAGE, "entrypoint": [""]},
            "needs": ["preview"],
            "rules": [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}],
            "script": [
                'curl --fail --silent --show-error --request POST --header "PRIVATE-TOKEN: '
                '$PREVIEW_TOKEN" --data-urlencode "body@preview.md" '
                '"$CI_API_V4_URL/projects/$CI_MERGE_REQUEST_PROJECT_ID/merge_requests/'
                '$CI_MERGE_REQUEST_IID/notes"'
            ],
        },
    }
    header = [
        "The article's delivery pipeline, written by `gitsail ci init gitlab`.",
        "build -> scan (Trivy, CRITICAL fails) -> push (default branch only) ->",
        "`gitsail image set` commits the new tag to the manifests repository; merge requests",
        "get `gitsail preview --pr` as a comment and `gitsail doctor` as an artifact.",
        "CI/CD variables (Settings > CI/CD > Variables): " + ", ".join(s.name for s in secrets),
    ]
    notes = []
    if manifests is not None:
        notes.append(
            "the preview and comment-preview jobs belong in the manifests repository's "
            ".gitlab-ci.yml (they run on its merge requests)"
        )
    return [CIFile(".gitlab-ci.yml", _dump(header, data), "both")], secrets, notes


def generate(options: CIOptions) -> Pipeline:
    """The pipeline's files (CIError when an option cannot go into one)."""
    options = _checked(options)
    if options.provider == GITHUB:
        build, secrets = _github_build(options)
        preview = _github_preview(options)
        notes = []
        if options.manifests_repo:
            notes.append(
                f"{preview.path} runs on pull requests of the manifests repository: commit it there"
            )
        return Pipeline(GITHUB, (build, preview), tuple(secrets), tuple(notes))
    files, secrets, notes = _gitlab(options)
    return Pipeline(GITLAB, tuple(files), tuple(secrets), tuple(notes))
