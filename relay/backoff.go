package relay

import (
	"math/rand/v2"
	"time"
)

// backoffCap returns base*2^(attempt-1), capped at maxWait.
func backoffCap(base, maxWait time.Duration, attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := base
	for i := 1; i < attempt && d < maxWait; i++ {
		d *= 2
	}
	return min(d, maxWait)
}

// fullJitter returns a random wait in [0, backoffCap]: retries of many
// events failing at once spread over the whole window instead of arriving
// together.
func fullJitter(base, maxWait time.Duration, attempt int) time.Duration {
	c := backoffCap(base, maxWait, attempt)
	if c <= 0 {
		return 0
	}
	return rand.N(c + 1)
}

// equalJitter returns a random wait in [backoffCap/2, backoffCap]: for the
// loop itself, which must actually slow down while everything fails.
func equalJitter(base, maxWait time.Duration, attempt int) time.Duration {
	c := backoffCap(base, maxWait, attempt)
	if c <= 1 {
		return c
	}
	return c/2 + rand.N(c/2+1)
}

// retryDelay returns how long a failed event waits before its next attempt:
// nothing after a permanent failure (it is dead-lettered at once
// anyway), otherwise full jitter, or longer when the sink asked for it.
func (c *Config) retryDelay(attempt int, err error) time.Duration {
	if IsPermanent(err) {
		return 0
	}
	d := fullJitter(c.RetryBase, c.RetryMax, attempt)
	if after, ok := RetryAfterOf(err); ok {
		d = max(d, after)
	}
	return d
}
