package eventsapi

func (s *Server) routeIngest() {}
