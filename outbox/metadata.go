package outbox

// Actor types, as bc-events names them.
const (
	ActorUser       = "user"
	ActorService    = "service"
	ActorThirdParty = "third-party"
)
