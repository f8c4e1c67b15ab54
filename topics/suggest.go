package topics

import "strings"

// suggest returns the candidate closest to s when it is close enough to be a
// typo of it (a case-only difference always is), or "".
func suggest(s string, candidates []string) string {
	// A third of the letters may be wrong, but at least one in a word of
	// three or more: "id" is not a typo of "if".
	limit := len(s) / 3
	if limit == 0 && len(s) >= 3 {
		limit = 1
	}
	best, bestDist := "", limit+1
	ls := strings.ToLower(s)
	for _, c := range candidates {
		if strings.EqualFold(s, c) {
			return c
		}
		if d := distance(ls, strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// distance is the optimal string alignment distance between a and b: the
// number of single-byte insertions, deletions, substitutions and adjacent
// transpositions that turn a into b. Transpositions count once because they
// are the commonest typo ("Entitiy", "Aciton").
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		// Long strings are never typos of a short keyword; avoid quadratic work.
		if a == b {
			return 0
		}
		return max(len(a), len(b))
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
