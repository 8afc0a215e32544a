package httpapi

import (
	"slices"
	"strings"
)

// Route is one route of the gateway's route table, for tests.
type Route struct{ Verb, Pattern, Method string }

// Routes is the gateway's route table, in order.
func Routes() []Route {
	var out []Route
	for key, method := range gatewayRoutes {
		verb, pattern, _ := strings.Cut(key, " ")
		out = append(out, Route{Verb: verb, Pattern: pattern, Method: method})
	}
	slices.SortFunc(out, func(a, b Route) int { return strings.Compare(a.Verb+a.Pattern, b.Verb+b.Pattern) })
	return out
}
