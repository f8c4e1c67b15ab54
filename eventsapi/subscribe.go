package eventsapi

func (s *Server) routeSubscribe() {}
