package eventsapi

import (
	"context"
	"time"
)

var (
	_ JobStore  = (*MemoryStore)(nil)
	_ LiveStore = (*MemoryStore)(nil)
)

// Enroll implements JobStore. It scans the events held, oldest first,
// under the store's lock.
func (s *MemoryStore) Enroll(ctx context.Context, req *EnrollRequest, job Event) (EnrollResult, bool, error) {
	if err := ctx.Err(); err != nil {
		return EnrollResult{}, false, err
	}
	conds, err := compileConditions(req.Conditions)
	if err != nil {
		return EnrollResult{}, false, err
	}
	now := s.now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return EnrollResult{}, false, ErrClosed
	}
	selects := func(src *Event) bool {
		return held(src) && src.Topic == req.SourceTopic && !src.Live &&
			(req.Tenant == "" || src.Tenant == req.Tenant) && matchConditions(conds, src.Data)
	}
	// A restarted job whose source the request selects, first.
	for pos := s.oldest; pos < s.next; pos++ {
		ev := s.at(pos)
		if !held(ev) || ev.Status != JobRestarted || ev.Topic != req.TargetTopic {
			continue
		}
		src, ok := s.held(ev.DependsOn)
		if !ok || !selects(src) {
			continue
		}
		j := *ev
		j.Status, j.Sender, j.UpdatedAt = JobPending, job.Sender, now
		if job.Description != "" {
			j.Description = job.Description
		}
		s.move(&j)
		s.changed(j)
		return EnrollResult{Source: *src, Job: j}, true, nil
	}
	for pos := s.oldest; pos < s.next; pos++ {
		src := s.at(pos)
		if !selects(src) {
			continue
		}
		if _, ok := s.jobs[jobKey{req.TargetTopic, src.ID}]; ok {
			continue
		}
		j := job
		j.Key, j.Tenant, j.DependsOn, j.Status = src.Key, src.Tenant, src.ID, JobPending
		j.Time, j.ReceivedAt, j.UpdatedAt = now, now, now
		s.put(&j, "")
		s.changed(j)
		return EnrollResult{Source: *src, Job: j}, true, nil
	}
	return EnrollResult{}, false, nil
}

// held returns the event id, when the store holds it. s.mu is held.
func (s *MemoryStore) held(id string) (*Event, bool) {
	pos, ok := s.ids[id]
	if !ok || pos < s.oldest {
		return nil, false
	}
	return s.at(pos), true
}

// changed wakes readers after ev was stored or moved. s.mu is held.
func (s *MemoryStore) changed(evs ...Event) {
	close(s.notify)
	s.notify = make(chan struct{})
	if s.appended != nil {
		s.appended(evs, 0)
	}
}

// UpdateJob implements JobStore.
func (s *MemoryStore) UpdateJob(ctx context.Context, tenant, id string, u JobUpdate, maxRetries int) (Event, error) {
	if err := ctx.Err(); err != nil {
		return Event{}, err
	}
	now := s.now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Event{}, ErrClosed
	}
	ev, ok := s.held(id)
	if !ok || (tenant != "" && ev.Tenant != tenant) {
		return Event{}, ErrNotFound
	}
	j := *ev
	if err := applyJobUpdate(&j, u, maxRetries, now); err != nil {
		return Event{}, err
	}
	s.move(&j)
	s.changed(j)
	return j, nil
}

// RestartStale implements JobStore.
func (s *MemoryStore) RestartStale(ctx context.Context, before time.Time, maxRetries int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := s.now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	var stale []int64
	for pos := s.oldest; pos < s.next; pos++ {
		if ev := s.at(pos); held(ev) && jobOpen(ev.Status) && ev.UpdatedAt.Before(before) {
			stale = append(stale, pos)
		}
	}
	moved := make([]Event, 0, len(stale))
	for _, pos := range stale {
		j := *s.at(pos)
		if err := applyJobUpdate(&j, JobUpdate{Status: JobRestarted}, maxRetries, now); err != nil {
			continue // not reached: pending and in_progress may restart
		}
		s.move(&j)
		moved = append(moved, j)
	}
	if len(moved) > 0 {
		s.changed(moved...)
	}
	return len(moved), nil
}

// jobOpen reports whether a job in state st is one that may go stale.
func jobOpen(st JobStatus) bool { return st == JobPending || st == JobInProgress }

// PublishLive implements LiveStore: it hands evs to the subscribers in
// this process.
func (s *MemoryStore) PublishLive(ctx context.Context, evs []Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	s.live.deliver(evs)
	return nil
}

// SubscribeLive implements LiveStore.
func (s *MemoryStore) SubscribeLive(fn func([]Event)) (stop func()) { return s.live.add(fn) }
