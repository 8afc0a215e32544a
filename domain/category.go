package domain

import (
	"fmt"
	"slices"
	"strings"
)

// Categories: the ledger's chart of accounts. A category is a named node of
// a tree (a parent, or none for a root) that holds the accounts its patterns
// match and every account of its descendants. Categories group accounts for
// roll-ups and listings; they move no money, and an account may be in
// several of them (or in none). A definition replaces the category of that
// name whole: it may change its patterns or move it under another parent,
// taking its descendants along.

// TypeCategoryDefined is the type of a CategoryDefined event in the log.
const TypeCategoryDefined = "CategoryDefined"

// Limits of categories: wire contracts, documented in the proto.
const (
	// CategoriesMax bounds a ledger's categories: each is held by the writer,
	// and a roll-up over all of them reads every one.
	CategoriesMax = 10_000
	// CategoriesPerRequestMax bounds the categories of one DefineCategories.
	CategoriesPerRequestMax = 1_000
	// CategoryDepthMax bounds a category's depth (a root is at depth 1).
	CategoryDepthMax = 16
	// CategoryPatternsMax bounds a category's patterns.
	CategoryPatternsMax = 32
	// CategoryDescriptionLenMax bounds a category's description, in bytes.
	CategoryDescriptionLenMax = 1024
)

// CategoryDefined defines the category Name, or replaces its definition:
// under Parent (absent for a root), holding the accounts Patterns match.
type CategoryDefined struct {
	Name        string   `json:"name"`
	Parent      string   `json:"parent,omitempty"`
	Patterns    []string `json:"patterns,omitempty"`
	Description string   `json:"description,omitempty"`
}

func (CategoryDefined) EventType() string { return TypeCategoryDefined }

// Category is a category as the state holds it: its last definition and
// where it was recorded.
type Category struct {
	Name, Parent string
	Patterns     []string
	Description  string
	Position     uint64
}

// DefineCategory defines a category, or redefines it.
type DefineCategory struct {
	Name        string
	Parent      string
	Patterns    []string
	Description string

	validated bool
}

// CommandID is the category's name.
func (c *DefineCategory) CommandID() string { return c.Name }

func (c *DefineCategory) Validate() error {
	if err := checkID("name", c.Name); err != nil {
		return err
	}
	if c.Parent != "" {
		if err := checkID("parent", c.Parent); err != nil {
			return err
		}
		if c.Parent == c.Name {
			return fieldErrf("parent", ErrInvalidField, "a category cannot be its own parent")
		}
	}
	if n := len(c.Patterns); n > CategoryPatternsMax {
		return fieldErrf("patterns", ErrInvalidField, "%d patterns, at most %d", n, CategoryPatternsMax)
	}
	for i, p := range c.Patterns {
		if err := CheckAccountPattern(p); err != nil {
			return fieldErrf(fmt.Sprintf("patterns[%d]", i), ErrInvalidField, "%v", err)
		}
	}
	if len(c.Patterns) == 0 {
		c.Patterns = nil // none is none, however it was sent: a retry compares equal
	}
	if n := len(c.Description); n > CategoryDescriptionLenMax {
		return fieldErrf("description", ErrInvalidField, "%d bytes, at most %d", n, CategoryDescriptionLenMax)
	}
	if !validText(c.Description) {
		return fieldErrf("description", ErrInvalidField, "must be UTF-8 without NUL")
	}
	c.validated = true
	return nil
}

// CheckAccountPattern checks an account pattern: segments separated by ':',
// each either "*" (any one segment, never empty) or literal id characters
// ([A-Za-z0-9_.@-]); at most IDLenMax bytes. A pattern without "*" names one
// account.
//
// Errors: a plain error saying what is wrong.
func CheckAccountPattern(p string) error {
	if len(p) == 0 || len(p) > IDLenMax {
		return fmt.Errorf("%q must have 1..%d bytes", truncate(p), IDLenMax)
	}
	for seg := range strings.SplitSeq(p, ":") {
		switch {
		case seg == "":
			return fmt.Errorf("%q has an empty segment", truncate(p))
		case seg == "*":
		default:
			for i := 0; i < len(seg); i++ {
				if !idByte(seg[i]) {
					return fmt.Errorf("%q: a segment is \"*\" or made of [A-Za-z0-9_.@-]", truncate(p))
				}
			}
		}
	}
	return nil
}

// MatchAccountPattern reports whether the account id matches a pattern that
// CheckAccountPattern accepts: as many segments, each "*" matching any
// non-empty segment and each other one itself.
func MatchAccountPattern(pattern, id string) bool {
	for {
		pi, ii := strings.IndexByte(pattern, ':'), strings.IndexByte(id, ':')
		pseg, iseg := pattern, id
		if pi >= 0 {
			pseg = pattern[:pi]
		}
		if ii >= 0 {
			iseg = id[:ii]
		}
		if pseg == "*" {
			if iseg == "" {
				return false
			}
		} else if pseg != iseg {
			return false
		}
		switch {
		case pi < 0 && ii < 0:
			return true
		case pi < 0 || ii < 0:
			return false
		}
		pattern, id = pattern[pi+1:], id[ii+1:]
	}
}

// AccountPatternPrefix is the literal part of a pattern before its first
// "*" segment (the whole pattern if it has none): every id the pattern
// matches starts with it, so it bounds an index range.
func AccountPatternPrefix(p string) string {
	if p == "*" || strings.HasPrefix(p, "*:") {
		return ""
	}
	if i := strings.Index(p, ":*"); i >= 0 && (i+2 == len(p) || p[i+2] == ':') {
		return p[:i+1]
	}
	return p
}

// Category returns the category with that name.
func (s *State) Category(name string) (Category, bool) {
	c, ok := s.categories[name]
	if !ok {
		return Category{}, false
	}
	return *c, true
}

// CategoryCount is the number of categories defined.
func (s *State) CategoryCount() int { return len(s.categories) }

// decideCategory defines c.Name, or redefines it: EXISTS when the definition
// is the one in force, else a new event, provided its parent exists and the
// tree stays a tree of depth at most CategoryDepthMax.
func decideCategory(s *State, c *DefineCategory) (Event, error) {
	if !c.validated {
		panic("domain: Decide on an unvalidated DefineCategory")
	}
	e := CategoryDefined{Name: c.Name, Parent: c.Parent, Patterns: slices.Clone(c.Patterns), Description: c.Description}
	prior, exists := s.categories[c.Name]
	if exists && prior.Parent == e.Parent && prior.Description == e.Description && slices.Equal(prior.Patterns, e.Patterns) {
		return nil, &ExistsError{Position: prior.Position}
	}
	if !exists && len(s.categories) >= CategoriesMax {
		return nil, fieldErrf("name", ErrInvalidField, "the ledger has %d categories, at most %d", len(s.categories), CategoriesMax)
	}
	if !exists || prior.Parent != c.Parent {
		if err := s.checkPlacement(c.Name, c.Parent, exists); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// checkPlacement checks that name may sit under parent: the parent exists,
// is not name or one of its descendants (a cycle), and name's subtree stays
// within CategoryDepthMax. A category being defined for the first time has
// no descendants.
//
// Errors: a *FieldError naming parent, wrapping ErrInvalidField.
func (s *State) checkPlacement(name, parent string, exists bool) error {
	depth := 1
	if parent != "" {
		if _, ok := s.categories[parent]; !ok {
			return fieldErrf("parent", ErrInvalidField, "no category %q: define it first (earlier in the request, or before)", truncate(parent))
		}
		// The path from parent up to its root, at most CategoryDepthMax
		// steps in a tree that holds its bound.
		for at, steps := parent, 0; at != "" && steps <= CategoryDepthMax; at, steps = s.categories[at].Parent, steps+1 {
			if at == name {
				return fieldErrf("parent", ErrInvalidField, "%q is %q or under it: a cycle", truncate(parent), truncate(name))
			}
			depth++
		}
	}
	height := 1
	if exists {
		height = s.categoryHeight(name)
	}
	if depth+height-1 > CategoryDepthMax {
		return fieldErrf("parent", ErrInvalidField, "%q would sit at depth %d with descendants %d deeper, at most %d in all",
			truncate(name), depth, height-1, CategoryDepthMax)
	}
	return nil
}

// categoryHeight is the number of levels of name's subtree (1: no
// descendants), walked down the children index: as many steps as the
// subtree has categories. (Walking up from every category instead cost
// CategoriesMax·CategoryDepthMax steps a move, seconds for a request of
// moves on the writer's goroutine.)
func (s *State) categoryHeight(name string) int {
	children := s.childIndex()
	height := 0
	level := []string{name}
	// A tree within its bound has at most CategoryDepthMax levels; the
	// bound also stops a walk in a state that would not be a tree.
	for len(level) > 0 && height <= CategoryDepthMax {
		height++
		var next []string
		for _, n := range level {
			for c := range children[n] {
				next = append(next, c)
			}
		}
		level = next
	}
	return height
}

// childIndex returns s.categoryChildren, built from s.categories first if
// it is not yet.
func (s *State) childIndex() map[string]map[string]struct{} {
	if s.categoryChildren == nil {
		s.categoryChildren = make(map[string]map[string]struct{}, len(s.categories))
		for _, c := range s.categories {
			s.linkChild(c.Parent, c.Name)
		}
	}
	return s.categoryChildren
}

// linkChild and unlinkChild keep the children index, when there is one.
func (s *State) linkChild(parent, name string) {
	if s.categoryChildren == nil {
		return
	}
	if s.categoryChildren[parent] == nil {
		s.categoryChildren[parent] = map[string]struct{}{}
	}
	s.categoryChildren[parent][name] = struct{}{}
}

func (s *State) unlinkChild(parent, name string) {
	if s.categoryChildren == nil {
		return
	}
	delete(s.categoryChildren[parent], name)
	if len(s.categoryChildren[parent]) == 0 {
		delete(s.categoryChildren, parent)
	}
}

// evolveCategory applies a definition, asserting what Decide checked: a
// log that breaks it (an import, a forged event) is refused, never kept.
func (s *State) evolveCategory(pos uint64, e *CategoryDefined) {
	prior, exists := s.categories[e.Name]
	if err := checkCategoryEvent(e); err != nil {
		panic(fmt.Sprintf("domain: category %s at %d: %v", e.Name, pos, err))
	}
	if !exists && len(s.categories) >= CategoriesMax {
		panic(fmt.Sprintf("domain: category %s at %d: more than %d categories", e.Name, pos, CategoriesMax))
	}
	if !exists || prior.Parent != e.Parent { // same parent: same place, same depths
		if err := s.checkPlacement(e.Name, e.Parent, exists); err != nil {
			panic(fmt.Sprintf("domain: category %s at %d: %v", e.Name, pos, err))
		}
	}
	s.categories[e.Name] = &Category{Name: e.Name, Parent: e.Parent, Patterns: e.Patterns, Description: e.Description, Position: pos}
	moved := !exists || prior.Parent != e.Parent
	if moved {
		if exists {
			s.unlinkChild(prior.Parent, e.Name)
		}
		s.linkChild(e.Parent, e.Name)
	}
	s.undo(func() {
		if moved {
			s.unlinkChild(e.Parent, e.Name)
			if exists {
				s.linkChild(prior.Parent, e.Name)
			}
		}
		if exists {
			s.categories[e.Name] = prior
		} else {
			delete(s.categories, e.Name)
		}
	})
}

// checkCategoryEvent checks an event's fields as Validate checks a command's.
func checkCategoryEvent(e *CategoryDefined) error {
	c := DefineCategory{Name: e.Name, Parent: e.Parent, Patterns: e.Patterns, Description: e.Description}
	if err := c.Validate(); err != nil {
		return err
	}
	if e.Patterns != nil && len(e.Patterns) == 0 {
		return fmt.Errorf("patterns: empty list: %w", ErrInvalidField)
	}
	return nil
}

// checkCategories checks a tree loaded whole (a snapshot): every category
// valid, placed under an existing parent, with no cycle, within the depth.
//
// Errors: a plain error naming the first category that is not.
func (s *State) checkCategories() error {
	for name, c := range s.categories {
		e := CategoryDefined{Name: c.Name, Parent: c.Parent, Patterns: c.Patterns, Description: c.Description}
		if name != c.Name || c.Position == 0 || c.Position > s.position {
			return fmt.Errorf("category %s at %d", truncate(name), c.Position)
		}
		if err := checkCategoryEvent(&e); err != nil {
			return fmt.Errorf("category %s: %w", truncate(name), err)
		}
		depth := 0
		for at := name; at != ""; at = s.categories[at].Parent {
			if _, ok := s.categories[at]; !ok {
				return fmt.Errorf("category %s: no parent %s", truncate(name), truncate(at))
			}
			if depth++; depth > CategoryDepthMax {
				return fmt.Errorf("category %s: deeper than %d, or in a cycle", truncate(name), CategoryDepthMax)
			}
		}
	}
	return nil
}
