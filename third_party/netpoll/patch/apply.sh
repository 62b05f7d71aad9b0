#!/usr/bin/env bash
# wsgate's patches to cloudwego/netpoll, kept as unified diffs against
# upstream (third_party/netpoll/WSGATE.md has the procedure).
#
#   apply.sh apply DIR             apply the patches, in order, to DIR: a
#                                  plain copy of upstream at $TAG
#   apply.sh check UPSTREAM        upstream + patches == the vendored tree
#   apply.sh series UPSTREAM DIR   make DIR a git repository: a commit of
#                                  upstream at $TAG (less what wsgate leaves
#                                  out), then one commit per patch
#   apply.sh upgrade DIR UPSTREAM NEWTAG
#                                  rebase DIR's patch commits onto NEWTAG
#                                  (three-way merges; conflicts as in any
#                                  git rebase)
#   apply.sh export DIR            write patch/*.patch from DIR's commits
#   apply.sh install DIR           copy DIR's tree into the vendored tree
#                                  (wsgate's own files stay)
#   apply.sh manifest UPSTREAM     write patch/upstream-$TAG.sha256 (every
#                                  file of upstream at $TAG, omitted.txt's
#                                  too)
#
# UPSTREAM is a git repository holding the tag (a clone of
# github.com/cloudwego/netpoll; NEWTAG may be any revision there) or a
# directory with upstream's files at the tag.
# $TAG is read from the manifest's name unless set in the environment.
#
# The offline check of the same thing is a Go test: vendor_test.go
# (go test -run TestVendoredIsUpstreamPlusPatches).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)      # third_party/netpoll/patch
vendored=$(dirname "$here")              # third_party/netpoll
if [[ -z "${TAG:-}" ]]; then
	m=$(cd "$here" && ls upstream-*.sha256 2>/dev/null | head -1)
	TAG=${m#upstream-}
	TAG=${TAG%.sha256}
fi
[[ -n "$TAG" ]] || { echo "no patch/upstream-TAG.sha256: set TAG" >&2; exit 2; }

die() { echo "apply.sh: $*" >&2; exit 1; }

patches() { ls "$here"/[0-9]*.patch | sort; }

# wsgate's own files in the vendored tree: not upstream's, not patched.
is_wsgate_file() {
	case "$1" in
	WSGATE.md | patch/*) return 0 ;;
	esac
	return 1
}

# upstream_copy SRC DEST [TAG]: upstream's files at the tag into DEST.
upstream_copy() {
	local src=$1 dest=$2 tag=${3:-$TAG}
	mkdir -p "$dest"
	if git --git-dir="$src" rev-parse -q --verify "$tag^{commit}" >/dev/null 2>&1; then
		git --git-dir="$src" archive "$tag" | tar -x -C "$dest"
	elif git -C "$src" rev-parse -q --verify "$tag^{commit}" >/dev/null 2>&1; then
		git -C "$src" archive "$tag" | tar -x -C "$dest"
	elif [[ -f "$src/go.mod" ]]; then
		cp -a "$src/." "$dest/"
		rm -rf "$dest/.git"
	else
		die "$src: neither a git repository with tag $tag nor a copy of upstream"
	fi
}

# Upstream files wsgate leaves out (docs, lint and CI helpers).
omitted() { grep -v '^#' "$here/omitted.txt" | grep .; }

prune() { # prune DIR: remove the omitted files
	local f
	for f in $(omitted); do rm -f "$1/$f"; done
	find "$1" -type d -empty -not -path '*/.git/*' -delete
}

# sums DIR: the manifest's lines for DIR's files.
sums() { (cd "$1" && find . -type f | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum); }

cmd_apply() {
	local dir=${1:?apply DIR}
	local p
	for p in $(patches); do
		echo "applying $(basename "$p")"
		patch -d "$dir" -p1 --forward --fuzz=0 --no-backup-if-mismatch --quiet -i "$p" ||
			die "$(basename "$p") does not apply to $dir (see its .rej files)"
	done
}

cmd_check() {
	local src=${1:?check UPSTREAM}
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	upstream_copy "$src" "$tmp/u"
	sums "$tmp/u" | cmp -s - "$here/upstream-$TAG.sha256" ||
		die "patch/upstream-$TAG.sha256 does not match upstream at $TAG"
	prune "$tmp/u"
	cmd_apply "$tmp/u"
	local bad=0 f
	while read -r f; do
		is_wsgate_file "$f" && continue
		if [[ ! -f "$tmp/u/$f" ]]; then
			case "$f" in
			*_test.go) continue ;; # wsgate's tests of its patches
			esac
			echo "only in the vendored tree: $f"
			bad=1
		elif ! cmp -s "$tmp/u/$f" "$vendored/$f"; then
			echo "differs from upstream + patches: $f"
			bad=1
		fi
	done < <(cd "$vendored" && find . -type f ! -name '*.test' | sed 's|^\./||' | sort)
	while read -r f; do
		[[ -f "$vendored/$f" ]] || { echo "missing from the vendored tree: $f"; bad=1; }
	done < <(cd "$tmp/u" && find . -type f | sed 's|^\./||' | sort)
	[[ $bad == 0 ]] || die "the vendored tree is not upstream $TAG + patch/*.patch"
	echo "ok: third_party/netpoll is upstream $TAG + $(patches | wc -l) patches"
}

# g DIR ARGS: git in DIR, committing as wsgate.
g() {
	local dir=$1
	shift
	git -C "$dir" -c user.name=wsgate -c user.email=wsgate@localhost -c commit.gpgsign=false "$@"
}

commit_patch() { # commit_patch DIR PATCHFILE: the patch's header is the message
	local dir=$1 p=$2
	{
		basename "$p" .patch
		echo
		sed -n '/^diff --git /q;p' "$p" | sed '${/^---$/d;}'
	} >"$dir/.git/PATCHMSG"
	g "$dir" add -A
	g "$dir" commit -q -F .git/PATCHMSG
}

cmd_series() {
	local src=${1:?series UPSTREAM DIR} dir=${2:?series UPSTREAM DIR}
	[[ ! -e "$dir" ]] || die "$dir exists"
	upstream_copy "$src" "$dir"
	prune "$dir"
	git -C "$dir" init -q
	g "$dir" add -A
	g "$dir" commit -q -m "upstream $TAG"
	g "$dir" tag base
	local p
	for p in $(patches); do
		(cd "$dir" && git apply --index "$p") || die "$(basename "$p") does not apply"
		commit_patch "$dir" "$p"
	done
	echo "$dir: upstream $TAG (tag base), then:"
	git -C "$dir" log --format='  %s' --reverse base..HEAD
}

cmd_upgrade() {
	local dir=${1:?upgrade DIR UPSTREAM NEWTAG} src=${2:?} newtag=${3:?}
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	upstream_copy "$src" "$tmp/u" "$newtag"
	prune "$tmp/u"
	local branch
	branch=$(git -C "$dir" rev-parse --abbrev-ref HEAD)
	g "$dir" checkout -q --detach base
	g "$dir" rm -rq .
	cp -a "$tmp/u/." "$dir/"
	g "$dir" add -A
	g "$dir" commit -q -m "upstream $newtag"
	local newbase
	newbase=$(git -C "$dir" rev-parse HEAD)
	g "$dir" checkout -q "$branch"
	g "$dir" rebase --onto "$newbase" base || {
		echo "resolve the conflicts in $dir, git rebase --continue, then tag: git -C $dir tag -f base $newbase"
		exit 1
	}
	g "$dir" tag -f base "$newbase" >/dev/null
	echo "rebased onto $newtag; next: apply.sh export $dir, install $dir, manifest (TAG=$newtag)"
}

cmd_export() {
	local dir=${1:?export DIR}
	rm -f "$here"/[0-9]*.patch
	local c subject
	for c in $(git -C "$dir" rev-list --reverse base..HEAD); do
		subject=$(git -C "$dir" log -1 --format=%s "$c")
		[[ "$subject" =~ ^[0-9][0-9]-[a-z0-9-]+$ ]] || die "commit $c: subject $subject is not NN-name"
		{
			git -C "$dir" log -1 --format=%b "$c" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
			echo "---"
			git -C "$dir" diff --no-color --no-renames --no-ext-diff "$c^" "$c"
		} >"$here/$subject.patch"
		echo "wrote patch/$subject.patch"
	done
}

cmd_install() {
	local dir=${1:?install DIR}
	local f
	# Upstream's files and the patches' new files from DIR; the rest of
	# the vendored tree (wsgate's tests, WSGATE.md, patch/) stays.
	(cd "$dir" && git ls-files) | while read -r f; do
		mkdir -p "$vendored/$(dirname "$f")"
		cp "$dir/$f" "$vendored/$f"
	done
	echo "installed; files upstream dropped must be removed by hand (apply.sh check lists them)"
}

cmd_manifest() {
	local src=${1:?manifest UPSTREAM}
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	upstream_copy "$src" "$tmp/u"
	sums "$tmp/u" >"$here/upstream-$TAG.sha256"
	echo "wrote patch/upstream-$TAG.sha256"
}

case "${1:-}" in
apply | check | series | upgrade | export | install | manifest)
	c=$1
	shift
	"cmd_$c" "$@"
	;;
*)
	sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
