package outbox

// Metadata keys of the event envelope. The relay hands delivered events to
// sinks as watermill messages whose UUID is the event id, whose payload is
// the event data and whose metadata carries these keys (see Event.Message),
// so a watermill subscriber on the other side of a broker sees them.
const (
	MetaTopic       = "topic"        // billing.InvoiceCreated
	MetaCategory    = "category"     // billing
	MetaEntity      = "entity"       // Invoice
	MetaAction      = "action"       // Created
	MetaActorID     = "actor_id"     // the user, service or third party that caused the event
	MetaActorType   = "actor_type"   // ActorUser, ActorService or ActorThirdParty
	MetaJobID       = "job_id"       // correlation id shared by the events of one request or job
	MetaSource      = "source"       // the publishing service's name
	MetaKey         = "key"          // ordering key
	MetaTraceparent = "traceparent"  // W3C trace context of the publishing request
	MetaTenant      = "tenant"       // optional tenant id
	MetaCausationID = "causation_id" // optional id of the event that caused this one
	MetaDedupeKey   = "dedupe_key"   // optional; a repeat publish with the same key is a no-op
	MetaTime        = "time"         // publish time, RFC 3339 with nanoseconds
)

// Actor types, as bc-events names them.
const (
	ActorUser       = "user"
	ActorService    = "service"
	ActorThirdParty = "third-party"
)
