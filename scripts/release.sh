#!/usr/bin/env bash
# Publish a release of the action: the tag vX.Y.Z (and the moving tags vX.Y and vX) end on a
# release commit whose action.yml runs the prebuilt image pinned by digest, so no user job
# ever compiles Rust. Run by .github/workflows/release.yml after the tests passed and the
# image was pushed; tests/release.rs runs it with --dry-run against a temporary repository.
#
#   scripts/release.sh --tag vX.Y.Z --image ghcr.io/<owner>/<repo> --digest sha256:<hex>
#                      [--bin path/to/d1-backup] [--notes FILE] [--dry-run]
#
# In order, and nothing is pushed before every check passed:
#   1. the tag is vMAJOR.MINOR.PATCH and equals Cargo.toml's version;
#   2. CHANGELOG.md has a section for the version (it becomes the release notes, --notes);
#   3. the image can be pulled anonymously (as the Actions runner pulls `docker://` images);
#      a private GHCR package fails here with the step that makes it public (skipped by
#      --dry-run, which has no registry);
#   4. a release commit on top of the tagged commit rewrites action.yml with
#      `d1-backup action-yml` (the code that generates the repository's action.yml);
#   5. vX.Y.Z, vX.Y and vX are (re)pointed at the release commit — locally with --dry-run,
#      then pushed to origin.
set -euo pipefail

tag= image= digest= bin= notes= dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag=$2; shift 2 ;;
    --image) image=$2; shift 2 ;;
    --digest) digest=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --notes) notes=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    *) echo "release.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
die() { echo "release.sh: $*" >&2; exit 1; }
[ -n "$tag" ] && [ -n "$image" ] && [ -n "$digest" ] || die "--tag, --image and --digest are required"
bin=${bin:-target/release/d1-backup}
[ -x "$bin" ] || die "$bin is not an executable d1-backup (build it, or pass --bin)"

# 1. The tag and Cargo.toml agree.
[[ "$tag" =~ ^v([0-9]+)\.([0-9]+)\.([0-9]+)$ ]] || die "tag $tag is not vMAJOR.MINOR.PATCH"
major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
version=${tag#v}
cargo_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
[ "$version" = "$cargo_version" ] \
  || die "tag $tag does not match Cargo.toml's version $cargo_version: set version = \"$version\" in Cargo.toml (and CHANGELOG.md), commit, and tag that commit"
[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || die "digest $digest is not sha256:<64 hex>"
[[ "$image" =~ ^[a-z0-9./_-]+$ ]] || die "image $image must be a lower-case reference without tag or digest"

# 2. Release notes from CHANGELOG.md.
section=$(awk -v v="$version" '
  /^## / { if (found) exit; if (index($0, "[" v "]")) { found = 1; next } }
  found { print }' CHANGELOG.md)
[ -n "$(printf '%s' "$section" | tr -d '[:space:]')" ] \
  || die "CHANGELOG.md has no section \"## [$version]\": move the Unreleased entries under it"
if [ -n "$notes" ]; then printf '%s\n' "$section" > "$notes"; fi

# 3. Anonymous pull, as the runner does it.
if [ "$dry_run" = 0 ]; then
  registry=${image%%/*} repository=${image#*/}
  token=$(curl -fsS "https://$registry/token?scope=repository:$repository:pull" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin).get("token",""))') || token=
  status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
    -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json' \
    "https://$registry/v2/$repository/manifests/$digest")
  [ "$status" = 200 ] || die "$image@$digest cannot be pulled anonymously (HTTP $status), so every workflow using the action would fail. Make the package public: GitHub → your profile or organization → Packages → ${image##*/} → Package settings → Danger Zone → Change visibility → Public. Then run the release again; no tag was moved."
fi

# 4. The release commit (committed and tagged as the Actions bot unless told otherwise).
who=(-c "user.name=${GIT_AUTHOR_NAME:-github-actions[bot]}"
     -c "user.email=${GIT_AUTHOR_EMAIL:-41898282+github-actions[bot]@users.noreply.github.com}")
ref="docker://$image@$digest"
tagged=$(git rev-parse "$tag^{commit}" 2>/dev/null || git rev-parse HEAD)
work=$(mktemp -d)
trap 'git worktree remove --force "$work" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach --quiet "$work" "$tagged"
"$bin" action-yml --image "$ref" > "$work/action.yml"
git -C "$work" add action.yml
git -C "$work" "${who[@]}" commit --quiet -m "Release $tag: action.yml runs $image@$digest"
release=$(git -C "$work" rev-parse HEAD)

# 5. Tags: the exact version and the moving major and minor tags.
for t in "$tag" "v$major.$minor" "v$major"; do
  git "${who[@]}" tag -f -a "$t" -m "d1-backup $tag ($image@$digest)" "$release" > /dev/null
  echo "$t -> $release"
done
if [ "$dry_run" = 1 ]; then
  echo "dry run: nothing pushed"
else
  git push --force origin "refs/tags/$tag" "refs/tags/v$major.$minor" "refs/tags/v$major"
fi
