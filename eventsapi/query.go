package eventsapi

func (s *Server) routeQuery() {}
