"""No reward hacking through git: before the agent's first command, the repository holds nothing
beyond `base_commit`.

Images that hold a full clone (SWE-bench's, SWE-rebench's) carry the fix in their history: later
commits behind remote branches, tags, the reflog or a stash. `strip_history_script` leaves only
HEAD at `base_commit`: reset to it, delete every other ref (branches, tags, remotes, stash),
drop the reflog, and prune unreachable objects (`gc --prune=now`) when the object store holds
more than HEAD reaches. Pruning takes seconds on a large repository; images built by
`swerl.sandbox.images` are stripped at build time and pass the check in milliseconds.

What it does not cover: the fix reaching the container another way (a pip cache, a wheel of a
later version, files the image's build left elsewhere). Sandboxes have no network, so it cannot
be downloaded.
"""

from __future__ import annotations

import shlex


def strip_history_script(workdir: str, base_commit: str) -> str:
    """Bash that leaves `workdir`'s repository with `base_commit` as its only history (exit 0 on
    success, 3 if base_commit is not there). Prints `stripped` when it had to prune objects."""
    base = shlex.quote(base_commit)
    return f"""(
set -e
cd {shlex.quote(workdir)}
git cat-file -e {base}^{{commit}} 2>/dev/null || {{ echo "base_commit {base_commit} is not in the repository"; exit 3; }}
git reset -q --hard {base}
for remote in $(git remote); do git remote remove "$remote"; done
head_ref=$(git symbolic-ref -q HEAD || true)
for ref in $(git for-each-ref --format='%(refname)'); do
  [ "$ref" = "$head_ref" ] || git update-ref -d "$ref"
done
rm -rf .git/logs
stored=$(git count-objects -v | awk '/^(count|in-pack):/ {{n += $2}} END {{print n}}')
reachable=$(git rev-list --objects --all | wc -l)
if [ "$stored" != "$reachable" ]; then
  git -c gc.auto=0 gc -q --prune=now
  echo stripped
fi
)"""
